// JDBC (pgJDBC) through shardwire: server-side prepared statements from the
// first execution (prepareThreshold=1), batches, SET isolation, transactions
// and errors, from several connections at once over fewer server
// connections. Exits non-zero, saying why, on any mismatch. Run by
// e2e/TestClientDrivers (java JdbcCheck.java, source-file mode) with the
// JDBC URL in SHARDWIRE_JDBC_URL and the password in PGPASSWORD.
import java.sql.*;
import java.util.*;
import java.util.concurrent.*;

public class JdbcCheck {
    static final List<String> failures = Collections.synchronizedList(new ArrayList<>());

    static void check(boolean cond, String msg) {
        if (!cond) failures.add(msg);
    }

    static void worker(int i) {
        Properties props = new Properties();
        props.setProperty("user", System.getenv("SHARDWIRE_USER"));
        props.setProperty("password", System.getenv("PGPASSWORD"));
        props.setProperty("prepareThreshold", "1");
        props.setProperty("sslmode", "disable");
        try (Connection conn = DriverManager.getConnection(System.getenv("SHARDWIRE_JDBC_URL"), props)) {
            try (PreparedStatement ps = conn.prepareStatement("SELECT ?::int + ?::int")) {
                for (int n = 0; n < 30; n++) {
                    ps.setInt(1, n);
                    ps.setInt(2, i);
                    try (ResultSet rs = ps.executeQuery()) {
                        rs.next();
                        check(rs.getInt(1) == n + i, "worker " + i + ": " + n + "+" + i + " gave " + rs.getInt(1));
                    }
                }
            }
            try (Statement st = conn.createStatement()) {
                st.execute("SET application_name = 'jdbc-" + i + "'");
            }
            try (PreparedStatement ps = conn.prepareStatement("SELECT current_setting('application_name')")) {
                for (int n = 0; n < 20; n++) {
                    try (ResultSet rs = ps.executeQuery()) {
                        rs.next();
                        check(rs.getString(1).equals("jdbc-" + i), "worker " + i + ": application_name is " + rs.getString(1));
                    }
                }
            }
            // A batch: many Bind/Execute before one Sync.
            try (PreparedStatement ps = conn.prepareStatement("INSERT INTO drivers (who, n) VALUES (?, ?)")) {
                for (int n = 0; n < 10; n++) {
                    ps.setString(1, "java" + i);
                    ps.setInt(2, n);
                    ps.addBatch();
                }
                int[] counts = ps.executeBatch();
                check(counts.length == 10, "worker " + i + ": batch counts " + Arrays.toString(counts));
            }
            // A transaction rolled back leaves nothing.
            conn.setAutoCommit(false);
            try (PreparedStatement ps = conn.prepareStatement("INSERT INTO drivers (who, n) VALUES (?, 99)")) {
                ps.setString(1, "java" + i);
                ps.executeUpdate();
            }
            conn.rollback();
            conn.setAutoCommit(true);
            try (PreparedStatement ps = conn.prepareStatement("SELECT count(*), sum(n) FROM drivers WHERE who = ?")) {
                ps.setString(1, "java" + i);
                try (ResultSet rs = ps.executeQuery()) {
                    rs.next();
                    check(rs.getInt(1) == 10 && rs.getInt(2) == 45, "worker " + i + ": rows " + rs.getInt(1) + ", sum " + rs.getInt(2));
                }
            }
            // An error keeps its SQLSTATE and the connection goes on.
            try (PreparedStatement ps = conn.prepareStatement("SELECT 1 / ?::int")) {
                ps.setInt(1, 0);
                ps.executeQuery();
                check(false, "worker " + i + ": division by zero did not fail");
            } catch (SQLException e) {
                check("22012".equals(e.getSQLState()), "worker " + i + ": SQLSTATE " + e.getSQLState());
            }
            try (Statement st = conn.createStatement(); ResultSet rs = st.executeQuery("SELECT 42")) {
                rs.next();
                check(rs.getInt(1) == 42, "worker " + i + ": after the error");
            }
        } catch (Exception e) {
            failures.add("worker " + i + ": " + e);
        }
    }

    public static void main(String[] args) throws Exception {
        ExecutorService pool = Executors.newFixedThreadPool(6);
        List<Future<?>> done = new ArrayList<>();
        for (int i = 0; i < 6; i++) {
            final int w = i;
            done.add(pool.submit(() -> worker(w)));
        }
        for (Future<?> f : done) f.get();
        pool.shutdown();
        if (!failures.isEmpty()) {
            failures.forEach(System.err::println);
            System.exit(1);
        }
        System.out.println("pgjdbc " + org.postgresql.util.DriverInfo.DRIVER_VERSION + " ok");
    }
}
