package router

import (
	"reflect"
	"strings"
	"testing"
)

// st builds an expected Statement; fields not given are zero.
type st = Statement

func TestInspect(t *testing.T) {
	t.Parallel()
	tests := []struct {
		sql  string
		want []Statement
	}{
		// plain DML and queries
		{"SELECT abalance FROM pgbench_accounts WHERE aid = 123", []st{{Command: CmdSelect}}},
		{"  select 1 ;", []st{{Command: CmdSelect}}},
		{"(SELECT 1) UNION (SELECT 2)", []st{{Command: CmdSelect}}},
		{"VALUES (1), (2)", []st{{Command: CmdSelect}}},
		{"TABLE t", []st{{Command: CmdSelect}}},
		{"INSERT INTO t VALUES (1)", []st{{Command: CmdInsert}}},
		{"UPDATE pgbench_accounts SET abalance = abalance + -5 WHERE aid = 1;", []st{{Command: CmdUpdate}}},
		{"DELETE FROM t", []st{{Command: CmdDelete}}},
		{"MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE", []st{{Command: CmdMerge}}},
		{"WITH x AS (SELECT 1) SELECT * FROM x", []st{{Command: CmdSelect}}},
		{"WITH RECURSIVE x(n) AS (SELECT 1 UNION ALL SELECT n+1 FROM x) SEARCH DEPTH FIRST BY n SET o SELECT * FROM x", []st{{Command: CmdSelect}}},
		{"WITH d AS (DELETE FROM t RETURNING *) INSERT INTO log SELECT * FROM d", []st{{Command: CmdInsert}}},
		{"WITH u AS MATERIALIZED (SELECT 1) UPDATE t SET a = 1", []st{{Command: CmdUpdate}}},
		{"WITH a AS (SELECT 1) DELETE FROM t", []st{{Command: CmdDelete}}},
		{"EXPLAIN ANALYZE DELETE FROM t", []st{{Command: CmdExplain}}},
		{"COPY t FROM STDIN", []st{{Command: CmdCopy}}},
		{"CALL p()", []st{{Command: CmdOther}}},
		{"VACUUM t", []st{{Command: CmdOther}}},
		{"garbage here ;;", []st{{Command: CmdOther}}},
		{"42", []st{{Command: CmdOther}}},

		// transactions
		{"BEGIN", []st{{Command: CmdBegin}}},
		{"begin work", []st{{Command: CmdBegin}}},
		{"BEGIN TRANSACTION ISOLATION LEVEL READ COMMITTED", []st{{Command: CmdBegin}}},
		{"BEGIN READ ONLY", []st{{Command: CmdBegin, TxAccess: TxReadOnly}}},
		{"BEGIN ISOLATION LEVEL SERIALIZABLE, READ ONLY, DEFERRABLE", []st{{Command: CmdBegin, TxAccess: TxReadOnly}}},
		{"START TRANSACTION READ WRITE", []st{{Command: CmdBegin, TxAccess: TxReadWrite}}},
		{"START TRANSACTION ISOLATION LEVEL READ UNCOMMITTED READ ONLY", []st{{Command: CmdBegin, TxAccess: TxReadOnly}}},
		{"START", []st{{Command: CmdOther}}},
		{"COMMIT", []st{{Command: CmdCommit}}},
		{"END TRANSACTION", []st{{Command: CmdCommit}}},
		{"COMMIT AND CHAIN", []st{{Command: CmdCommit, Chain: true}}},
		{"COMMIT AND NO CHAIN", []st{{Command: CmdCommit}}},
		{"COMMIT PREPARED 'x'", []st{{Command: CmdCommitPrepared}}},
		{"ROLLBACK", []st{{Command: CmdRollback}}},
		{"ABORT AND CHAIN", []st{{Command: CmdRollback, Chain: true}}},
		{"ROLLBACK WORK AND CHAIN", []st{{Command: CmdRollback, Chain: true}}},
		{"ROLLBACK PREPARED 'x'", []st{{Command: CmdRollbackPrepared}}},
		{"ROLLBACK TO SAVEPOINT sp1", []st{{Command: CmdRollbackTo, Name: "sp1"}}},
		{"ROLLBACK TRANSACTION TO \"Sp\"", []st{{Command: CmdRollbackTo, Name: "Sp"}}},
		{"SAVEPOINT Sp1", []st{{Command: CmdSavepoint, Name: "sp1"}}},
		{"RELEASE SAVEPOINT sp1", []st{{Command: CmdRelease, Name: "sp1"}}},
		{"RELEASE sp1", []st{{Command: CmdRelease, Name: "sp1"}}},
		{"PREPARE TRANSACTION 'gid'", []st{{Command: CmdPrepareTransaction}}},

		// SET and RESET
		{"SET search_path TO \"$user\", public", []st{{Command: CmdSet, Set: SetCommand{Name: "search_path", Value: `"$user", public`}}}},
		{"SET SESSION search_path = a,b", []st{{Command: CmdSet, Set: SetCommand{Name: "search_path", Value: "a,b"}}}},
		{"set Application_Name = 'my app'", []st{{Command: CmdSet, Set: SetCommand{Name: "application_name", Value: "'my app'"}}}},
		{"SET DateStyle TO ISO, MDY", []st{{Command: CmdSet, Set: SetCommand{Name: "datestyle", Value: "ISO, MDY"}}}},
		{"SET statement_timeout = 5000", []st{{Command: CmdSet, Set: SetCommand{Name: "statement_timeout", Value: "5000"}}}},
		{"SET LOCAL statement_timeout = '1s'", []st{{Command: CmdSet, Set: SetCommand{Name: "statement_timeout", Value: "'1s'", Local: true}}}},
		{"SET work_mem TO DEFAULT", []st{{Command: CmdSet, Set: SetCommand{Name: "work_mem", Reset: true}}}},
		{"SET TIME ZONE 'Europe/Paris'", []st{{Command: CmdSet, Set: SetCommand{Name: "timezone", Value: "'Europe/Paris'"}}}},
		{"SET TIME ZONE LOCAL", []st{{Command: CmdSet, Set: SetCommand{Name: "timezone", Reset: true}}}},
		{"SET TIME ZONE DEFAULT", []st{{Command: CmdSet, Set: SetCommand{Name: "timezone", Reset: true}}}},
		{"SET TIME ZONE INTERVAL '+02:00' HOUR TO MINUTE", []st{{Command: CmdSet, Set: SetCommand{Name: "timezone", Value: "INTERVAL '+02:00' HOUR TO MINUTE"}}}},
		{"SET timezone = 'UTC'", []st{{Command: CmdSet, Set: SetCommand{Name: "timezone", Value: "'UTC'"}}}},
		{"SET NAMES 'UTF8'", []st{{Command: CmdSet, Set: SetCommand{Name: "client_encoding", Value: "'UTF8'"}}}},
		{"SET NAMES", []st{{Command: CmdSet, Set: SetCommand{Name: "client_encoding", Reset: true}}}},
		{"SET SCHEMA 'app'", []st{{Command: CmdSet, Set: SetCommand{Name: "search_path", Value: "'app'"}}}},
		{"SET ROLE admin", []st{{Command: CmdSet, Set: SetCommand{Name: "role", Value: "admin"}}}},
		{"SET ROLE NONE", []st{{Command: CmdSet, Set: SetCommand{Name: "role", Reset: true}}}},
		{"SET role = 'admin'", []st{{Command: CmdSet, Set: SetCommand{Name: "role", Value: "'admin'"}}}},
		{"SET SESSION AUTHORIZATION 'bob'", []st{{Command: CmdSet, Set: SetCommand{Name: "session_authorization", Value: "'bob'"}}}},
		{"SET SESSION AUTHORIZATION DEFAULT", []st{{Command: CmdSet, Set: SetCommand{Name: "session_authorization", Reset: true}}}},
		{"SET LOCAL SESSION AUTHORIZATION bob", []st{{Command: CmdSet, Set: SetCommand{Name: "session_authorization", Value: "bob", Local: true}}}},
		{"SET XML OPTION DOCUMENT", []st{{Command: CmdSet, Set: SetCommand{Name: "xmloption", Value: "DOCUMENT"}}}},
		{"SET myapp.user_id = '42'", []st{{Command: CmdSet, Set: SetCommand{Name: "myapp.user_id", Value: "'42'"}}}},
		{`SET "MyApp"."user" TO 7`, []st{{Command: CmdSet, Set: SetCommand{Name: "myapp.user", Value: "7"}}}},
		{"SET search_path = a, /* note */ b", []st{{Command: CmdSet, Set: SetCommand{Name: "search_path", Value: "a, b"}}}},
		{"SET search_path = a, -- note\n b", []st{{Command: CmdSet, Set: SetCommand{Name: "search_path", Value: "a, b"}}}},
		{"SET search_path = a -- trailing", []st{{Command: CmdSet, Set: SetCommand{Name: "search_path", Value: "a"}}}},
		{"SET TRANSACTION READ ONLY", []st{{Command: CmdSet, Set: SetCommand{Value: "READ ONLY", Transaction: true, TxAccess: TxReadOnly}}}},
		{"SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ WRITE", []st{{Command: CmdSet, Set: SetCommand{Value: "ISOLATION LEVEL REPEATABLE READ, READ WRITE", Transaction: true, TxAccess: TxReadWrite}}}},
		{"SET TRANSACTION ISOLATION LEVEL SERIALIZABLE -- c", []st{{Command: CmdSet, Set: SetCommand{Value: "ISOLATION LEVEL SERIALIZABLE", Transaction: true}}}},
		{"SET TRANSACTION SNAPSHOT '00000003-0000001B-1'", []st{{Command: CmdSet, Set: SetCommand{Name: "transaction_snapshot", Value: "'00000003-0000001B-1'", Transaction: true}}}},
		{"SET transaction_read_only = on", []st{{Command: CmdSet, Set: SetCommand{Name: "transaction_read_only", Value: "on", Transaction: true, TxAccess: TxReadOnly}}}},
		{"SET default_transaction_read_only TO 'off'", []st{{Command: CmdSet, Set: SetCommand{Name: "default_transaction_read_only", Value: "'off'", TxAccess: TxReadWrite}}}},
		{"SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY", []st{{Command: CmdSet, Set: SetCommand{Name: "default_transaction_read_only", Value: "on", TxAccess: TxReadOnly}}}},
		{"SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ WRITE, NOT DEFERRABLE", []st{{Command: CmdSet,
			Set: SetCommand{Name: "default_transaction_isolation", Value: "'serializable'"},
			SetMore: []SetCommand{
				{Name: "default_transaction_read_only", Value: "off", TxAccess: TxReadWrite},
				{Name: "default_transaction_deferrable", Value: "off"},
			}}}},
		{"SET x FROM CURRENT", []st{{Command: CmdSet}}},
		{"RESET ALL", []st{{Command: CmdReset, Set: SetCommand{ResetAll: true}}}},
		{"RESET search_path", []st{{Command: CmdReset, Set: SetCommand{Name: "search_path", Reset: true}}}},
		{"RESET TIME ZONE", []st{{Command: CmdReset, Set: SetCommand{Name: "timezone", Reset: true}}}},
		{"RESET SESSION AUTHORIZATION", []st{{Command: CmdReset, Set: SetCommand{Name: "session_authorization", Reset: true}}}},
		{"RESET ROLE", []st{{Command: CmdReset, Set: SetCommand{Name: "role", Reset: true}}}},
		{"RESET TRANSACTION ISOLATION LEVEL", []st{{Command: CmdReset, Set: SetCommand{Name: "transaction_isolation", Reset: true, Transaction: true}}}},
		{"DISCARD ALL", []st{{Command: CmdDiscard, All: true}}},
		{"DISCARD PLANS", []st{{Command: CmdDiscard, Name: "plans"}}},
		{"SHOW search_path", []st{{Command: CmdShow, Name: "search_path"}}},
		{"SHOW TIME ZONE", []st{{Command: CmdShow, Name: "timezone"}}},
		{"SHOW ALL", []st{{Command: CmdShow, All: true}}},

		// prepared statements, cursors, notifications
		{"PREPARE q (int) AS SELECT $1", []st{{Command: CmdPrepare, Name: "q", Pin: PinPrepare}}},
		{"EXECUTE q(1)", []st{{Command: CmdExecute, Name: "q"}}},
		{"DEALLOCATE PREPARE q", []st{{Command: CmdDeallocate, Name: "q"}}},
		{"DEALLOCATE ALL", []st{{Command: CmdDeallocate, All: true}}},
		{"LISTEN chan", []st{{Command: CmdListen, Name: "chan", Pin: PinListen}}},
		{"UNLISTEN *", []st{{Command: CmdUnlisten, All: true}}},
		{"UNLISTEN chan", []st{{Command: CmdUnlisten, Name: "chan"}}},
		{"NOTIFY chan, 'payload'", []st{{Command: CmdNotify, Name: "chan"}}},
		{"DECLARE c CURSOR FOR SELECT 1", []st{{Command: CmdDeclare, Name: "c"}}},
		{"DECLARE c NO SCROLL CURSOR WITH HOLD FOR SELECT 1", []st{{Command: CmdDeclare, Name: "c", Pin: PinWithHold}}},
		{"DECLARE c CURSOR WITHOUT HOLD FOR SELECT 1", []st{{Command: CmdDeclare, Name: "c"}}},
		{"DECLARE c CURSOR FOR WITH hold AS (SELECT 1) SELECT * FROM hold", []st{{Command: CmdDeclare, Name: "c"}}},
		{"FETCH 10 FROM c", []st{{Command: CmdFetch}}},
		{"MOVE NEXT IN c", []st{{Command: CmdFetch}}},
		{"CLOSE c", []st{{Command: CmdClose, Name: "c"}}},
		{"CLOSE ALL", []st{{Command: CmdClose, All: true}}},

		// pins
		{"SELECT pg_advisory_lock(1)", []st{{Command: CmdSelect, Pin: PinAdvisoryLock}}},
		{"select PG_TRY_ADVISORY_LOCK_SHARED(1, 2)", []st{{Command: CmdSelect, Pin: PinAdvisoryLock}}},
		{"SELECT pg_catalog.pg_advisory_lock_shared (42)", []st{{Command: CmdSelect, Pin: PinAdvisoryLock}}},
		{"SELECT pg_advisory_xact_lock(1)", []st{{Command: CmdSelect}}},
		{"SELECT pg_try_advisory_xact_lock(1)", []st{{Command: CmdSelect}}},
		{"SELECT 'pg_advisory_lock(1)'", []st{{Command: CmdSelect}}},
		{"SELECT 1 /* pg_advisory_lock(1) */", []st{{Command: CmdSelect}}},
		{"WITH l AS (SELECT pg_advisory_lock(7)) SELECT * FROM l", []st{{Command: CmdSelect, Pin: PinAdvisoryLock}}},
		{"SELECT set_config('app.user', '42', false)", []st{{Command: CmdSelect, Pin: PinSetConfig}}},
		{"SELECT set_config('app.user', '42', true)", []st{{Command: CmdSelect}}},
		{"SELECT set_config('app.user', f(1, 2), TRUE), 1", []st{{Command: CmdSelect}}},
		{"SELECT set_config('a', 'b', x)", []st{{Command: CmdSelect, Pin: PinSetConfig}}},
		{"SELECT set_config('a', 'b')", []st{{Command: CmdSelect, Pin: PinSetConfig}}},
		{"WITH s AS (SELECT set_config('a', 'b', false)) SELECT 1", []st{{Command: CmdSelect, Pin: PinSetConfig}}},
		{"CREATE TEMP TABLE t (a int)", []st{{Command: CmdCreate, Pin: PinTemp}}},
		{"CREATE TEMPORARY TABLE t AS SELECT 1", []st{{Command: CmdCreate, Pin: PinTemp}}},
		{"CREATE LOCAL TEMP SEQUENCE s", []st{{Command: CmdCreate, Pin: PinTemp}}},
		{"CREATE OR REPLACE TEMP VIEW v AS SELECT 1", []st{{Command: CmdCreate, Pin: PinTemp}}},
		{"CREATE TEMP TABLE t (a int) ON COMMIT DROP", []st{{Command: CmdCreate}}},
		{"CREATE TEMP TABLE t (a int) ON COMMIT DELETE ROWS", []st{{Command: CmdCreate, Pin: PinTemp}}},
		{"CREATE TABLE pg_temp.t (a int)", []st{{Command: CmdCreate, Pin: PinTemp}}},
		{"CREATE TABLE t (a int)", []st{{Command: CmdCreate}}},
		{"CREATE UNLOGGED TABLE t (a int)", []st{{Command: CmdCreate}}},
		{"SELECT * INTO TEMP t FROM s", []st{{Command: CmdSelect, Pin: PinTemp}}},
		{"SELECT * INTO LOCAL TEMPORARY TABLE t FROM s", []st{{Command: CmdSelect, Pin: PinTemp}}},
		{"SELECT * INTO pg_temp.t FROM s", []st{{Command: CmdSelect, Pin: PinTemp}}},
		{"SELECT * INTO t FROM s", []st{{Command: CmdSelect}}},
		{"INSERT INTO temp VALUES (1)", []st{{Command: CmdInsert}}},
		{"LOAD 'auto_explain'", []st{{Command: CmdOther, Pin: PinLoad}}},

		// several statements
		{"BEGIN; UPDATE t SET a = 1 WHERE id = 2; COMMIT;", []st{{Command: CmdBegin}, {Command: CmdUpdate}, {Command: CmdCommit}}},
		{"SELECT ';'; SELECT $$;$$; SELECT \";\"", []st{{Command: CmdSelect}, {Command: CmdSelect}, {Command: CmdSelect}}},
		{"SET a = 1; /* c */ ; ; RESET a", []st{{Command: CmdSet, Set: SetCommand{Name: "a", Value: "1"}}, {Command: CmdReset, Set: SetCommand{Name: "a", Reset: true}}}},
		{"SELECT 1 -- ; not a separator\n; SELECT 2", []st{{Command: CmdSelect}, {Command: CmdSelect}}},
		{"CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT CASE WHEN true THEN 1 END; END; SELECT 3",
			[]st{{Command: CmdCreate}, {Command: CmdSelect}}},
		{"CREATE PROCEDURE p() LANGUAGE sql AS $$ BEGIN; $$; COMMIT", []st{{Command: CmdCreate}, {Command: CmdCommit}}},

		// empty
		{"", []st{{Command: CmdEmpty}}},
		{" ; ;  -- nothing", []st{{Command: CmdEmpty}}},
		{"/* shardwire: role=primary */", []st{{Command: CmdEmpty}}},
	}
	for _, tt := range tests {
		t.Run(tt.sql, func(t *testing.T) {
			t.Parallel()
			got := Inspect(tt.sql).Statements
			for i := range got {
				got[i].Start, got[i].End = 0, 0
				got[i].Hints = Hints{}
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Inspect(%q)\n got: %+v\nwant: %+v", tt.sql, got, tt.want)
			}
		})
	}
}

func TestInspectRanges(t *testing.T) {
	t.Parallel()
	sql := " /* a */ SELECT 1 /* b */ ;\n\tINSERT INTO t VALUES ('x;y') -- z\n;UPDATE t SET a = 2"
	want := []string{"SELECT 1", "INSERT INTO t VALUES ('x;y')", "UPDATE t SET a = 2"}
	got := Inspect(sql).Statements
	if len(got) != len(want) {
		t.Fatalf("got %d statements, want %d", len(got), len(want))
	}
	for i := range want {
		if text := got[i].Text(sql); text != want[i] {
			t.Errorf("statement %d text = %q, want %q", i, text, want[i])
		}
	}
}

func TestInspectHints(t *testing.T) {
	t.Parallel()
	tests := []struct {
		sql    string
		want   []Hints // Err compared by presence
		errSub string  // substring of the first statement's error
	}{
		{"/* shardwire: role=primary */ SELECT 1", []Hints{{Role: RolePrimary}}, ""},
		{"SELECT 1 /* SHARDWIRE : role=Replica */", []Hints{{Role: RoleReplica}}, ""},
		{"-- shardwire: shard=s1, key=42\nSELECT 1", []Hints{{Shard: "s1", Key: "42", HasKey: true}}, ""},
		{"/* shardwire: shard=s1 key='a b, c''d' role=auto */ SELECT 1", []Hints{{Shard: "s1", Key: "a b, c'd", HasKey: true}}, ""},
		{"/* shardwire: role=primary */ SELECT 1; /* shardwire: role=replica */ SELECT 2; SELECT 3",
			[]Hints{{Role: RolePrimary}, {Role: RoleReplica}, {}}, ""},
		{"/* shardwire: shard=s1 */ SELECT /* shardwire: key=7 */ 1", []Hints{{Shard: "s1", Key: "7", HasKey: true}}, ""},
		{"/* shardwire is nice */ SELECT 1", []Hints{{}}, ""},
		{"/* not a hint: shardwire: role=primary */ SELECT 1", []Hints{{}}, ""},
		{"SELECT '/* shardwire: role=primary */'", []Hints{{}}, ""},
		{"/* shardwire: rolle=primary */ SELECT 1", []Hints{{Err: &HintError{}}}, `unknown key "rolle"`},
		{"/* shardwire: role=leader */ SELECT 1", []Hints{{Err: &HintError{}}}, "role must be"},
		{"/* shardwire: role */ SELECT 1", []Hints{{Err: &HintError{}}}, "not key=value"},
		{"/* shardwire: key= */ SELECT 1", []Hints{{Err: &HintError{}}}, "empty value"},
		{"/* shardwire: key='x */ SELECT 1", []Hints{{Err: &HintError{}}}, "unterminated"},
		{"/* shardwire: */ SELECT 1", []Hints{{Err: &HintError{}}}, "no key=value"},
		{"/* shardwire: role=primary role=replica */ SELECT 1", []Hints{{Role: RolePrimary, Err: &HintError{}}}, "conflicting roles"},
		{"/* shardwire: shard=a */ /* shardwire: shard=b */ SELECT 1", []Hints{{Shard: "a", Err: &HintError{}}}, "conflicting shards"},
	}
	for _, tt := range tests {
		t.Run(tt.sql, func(t *testing.T) {
			t.Parallel()
			got := Inspect(tt.sql).Statements
			if len(got) != len(tt.want) {
				t.Fatalf("got %d statements, want %d", len(got), len(tt.want))
			}
			for i, w := range tt.want {
				g := got[i].Hints
				if (g.Err != nil) != (w.Err != nil) {
					t.Fatalf("statement %d: Err = %v, want error: %v", i, g.Err, w.Err != nil)
				}
				if i == 0 && tt.errSub != "" && !strings.Contains(g.Err.Error(), tt.errSub) {
					t.Errorf("error %q does not contain %q", g.Err, tt.errSub)
				}
				if g.Any() != (w != Hints{}) {
					t.Errorf("statement %d: Any() = %v for %+v", i, g.Any(), g)
				}
				g.Err, w.Err = nil, nil
				if g != w {
					t.Errorf("statement %d hints = %+v, want %+v", i, g, w)
				}
			}
		})
	}
}

func TestSetCommandSQL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		sql  string
		want string
	}{
		{"SET search_path TO \"$user\", public", `SET "search_path" = "$user", public`},
		{"SET LOCAL statement_timeout = 5", `SET LOCAL "statement_timeout" = 5`},
		{"SET TIME ZONE 'UTC'", `SET "timezone" = 'UTC'`},
		{"SET TIME ZONE INTERVAL '+02:00' HOUR TO MINUTE", `SET TIME ZONE INTERVAL '+02:00' HOUR TO MINUTE`},
		{"SET SESSION AUTHORIZATION bob", `SET SESSION AUTHORIZATION bob`},
		{"SET ROLE admin", `SET "role" = admin`},
		{`SET app."user" = 'x'`, `SET "app"."user" = 'x'`},
		{"RESET SESSION AUTHORIZATION", "RESET SESSION AUTHORIZATION"},
		{"SET work_mem TO DEFAULT", `RESET "work_mem"`},
		{"RESET ALL", "RESET ALL"},
		{"SET NAMES 'LATIN1'", `SET "client_encoding" = 'LATIN1'`},
		{"SET TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ ONLY", "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ ONLY"},
		{"SET TRANSACTION SNAPSHOT '0-1'", `SET TRANSACTION SNAPSHOT '0-1'`},
	}
	for _, tt := range tests {
		got := Inspect(tt.sql).Statements[0].Set.SQL()
		if got != tt.want {
			t.Errorf("SQL() of %q = %q, want %q", tt.sql, got, tt.want)
		}
		// What SQL renders must read back as the same setting.
		if re := Inspect(got).Statements[0].Set; re.Name != Inspect(tt.sql).Statements[0].Set.Name {
			t.Errorf("SQL() of %q = %q reads back as setting %q", tt.sql, got, re.Name)
		}
	}
}

func TestAppendInspectNoAlloc(t *testing.T) {
	buf := make([]Statement, 0, 4)
	for _, sql := range []string{
		"SELECT abalance FROM pgbench_accounts WHERE aid = 123",
		"BEGIN; UPDATE pgbench_accounts SET abalance = abalance + 42 WHERE aid = 7; SELECT abalance FROM pgbench_accounts WHERE aid = 7; COMMIT;",
		"SET search_path = a, b",
	} {
		allocs := testing.AllocsPerRun(100, func() { buf = AppendInspect(buf[:0], sql) })
		if allocs != 0 {
			t.Errorf("AppendInspect(%q) allocates %v times, want 0", sql, allocs)
		}
	}
}

func TestInspectionPin(t *testing.T) {
	t.Parallel()
	if got := Inspect("SELECT 1; LISTEN c; SELECT pg_advisory_lock(1)").Pin(); got != PinListen {
		t.Errorf("Pin() = %q, want %q", got, PinListen)
	}
	if got := Inspect("SELECT 1; SELECT 2").Pin(); got != "" {
		t.Errorf("Pin() = %q, want none", got)
	}
}

// TestInspectPlain: the lexer-free shortcut takes the common plain
// statements and leaves everything it cannot vouch for to the lexer.
func TestInspectPlain(t *testing.T) {
	t.Parallel()
	cases := []struct {
		sql        string
		ok         bool
		cmd        Command
		start, end int
	}{
		{"SELECT abalance FROM pgbench_accounts WHERE aid = 42;", true, CmdSelect, 0, 52},
		{"  update t set a = a + -1 where b <= 2 ;  ", true, CmdUpdate, 2, 38},
		{"delete from t where a >= 1.5", true, CmdDelete, 0, 28},
		{"select *, t.* from t", true, CmdSelect, 0, 20},
		{"SELECT a INTO b FROM c", false, 0, 0, 0},      // may create a table
		{"SELECT a INTO TEMP b FROM c", false, 0, 0, 0}, // pins
		{"select pg_advisory_lock(1)", false, 0, 0, 0},  // a call
		{"select set_config('a', 'b', false)", false, 0, 0, 0},
		{"select 1 -- shardwire: role=replica", false, 0, 0, 0}, // comments carry hints
		{"/* shardwire: shard=s1 */ select 1", false, 0, 0, 0},
		{"select 1; select 2", false, 0, 0, 0},
		{"select 'a;b'", false, 0, 0, 0},
		{"select \"into\" from t", false, 0, 0, 0},
		{"select $1", false, 0, 0, 0},
		{"insert into t values (1)", false, 0, 0, 0},
		{"with x as (select 1) select * from x", false, 0, 0, 0},
		{"selectx 1", false, 0, 0, 0},
		{"SELECT 0INTO TEMP t", false, 0, 0, 0}, // the lexer splits 0 from INTO
		{"select 1e5, 0x1F", false, 0, 0, 0},
		{"BEGIN", false, 0, 0, 0},
		{"", false, 0, 0, 0},
	}
	for _, c := range cases {
		st, ok := inspectPlain(c.sql)
		if ok != c.ok {
			t.Errorf("inspectPlain(%q) ok = %v, want %v", c.sql, ok, c.ok)
			continue
		}
		lexed := appendInspectLexed(nil, c.sql)
		if !ok {
			continue
		}
		if st.Command != c.cmd || st.Start != c.start || st.End != c.end {
			t.Errorf("inspectPlain(%q) = %v [%d:%d], want %v [%d:%d]", c.sql, st.Command, st.Start, st.End, c.cmd, c.start, c.end)
		}
		if !reflect.DeepEqual(lexed, []Statement{st}) {
			t.Errorf("inspectPlain(%q) = %+v, the lexer says %+v", c.sql, st, lexed)
		}
	}
}
