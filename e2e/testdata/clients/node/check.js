// node-postgres (pg) through shardwire: named prepared statements, a pool of
// clients running at once over fewer server connections, SET isolation,
// transactions and errors. Exits non-zero, saying why, on any mismatch. Run
// by e2e/TestClientDrivers with the connection string in SHARDWIRE_DSN.
'use strict';
const pg = require('pg');

const failures = [];
const check = (cond, msg) => { if (!cond) failures.push(msg); };

async function worker(i) {
  const client = new pg.Client({ connectionString: process.env.SHARDWIRE_DSN });
  await client.connect();
  try {
    for (let n = 0; n < 30; n++) {
      // A name makes pg prepare the statement once per connection.
      const r = await client.query({ name: 'add', text: 'SELECT $1::int + $2::int AS s', values: [n, i] });
      check(r.rows[0].s === n + i, `worker ${i}: ${n}+${i} gave ${r.rows[0].s}`);
    }
    await client.query(`SET application_name = 'node-${i}'`);
    for (let n = 0; n < 20; n++) {
      const r = await client.query({ name: 'app', text: "SELECT current_setting('application_name') AS a" });
      check(r.rows[0].a === `node-${i}`, `worker ${i}: application_name is ${r.rows[0].a}`);
    }
    for (let n = 0; n < 10; n++) {
      await client.query({ name: 'ins', text: 'INSERT INTO drivers (who, n) VALUES ($1, $2)', values: [`node${i}`, n] });
    }
    await client.query('BEGIN');
    await client.query('INSERT INTO drivers (who, n) VALUES ($1, 99)', [`node${i}`]);
    await client.query('ROLLBACK');
    const c = await client.query('SELECT count(*)::int AS c, sum(n)::int AS s FROM drivers WHERE who = $1', [`node${i}`]);
    check(c.rows[0].c === 10 && c.rows[0].s === 45, `worker ${i}: rows ${JSON.stringify(c.rows[0])}`);
    try {
      await client.query('SELECT 1 / $1::int', [0]);
      check(false, `worker ${i}: division by zero did not fail`);
    } catch (e) {
      check(e.code === '22012', `worker ${i}: SQLSTATE ${e.code}`);
    }
    const r = await client.query('SELECT 42 AS x');
    check(r.rows[0].x === 42, `worker ${i}: after the error`);
  } finally {
    await client.end();
  }
}

(async () => {
  const results = await Promise.allSettled([...Array(6).keys()].map(worker));
  results.forEach((r, i) => { if (r.status === 'rejected') failures.push(`worker ${i}: ${r.reason}`); });
  if (failures.length) {
    console.error(failures.join('\n'));
    process.exit(1);
  }
  console.log(`pg ${require('pg/package.json').version} ok`);
})();
