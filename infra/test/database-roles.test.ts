import { execFileSync } from 'node:child_process';
import * as path from 'node:path';

// The custom resource's function is plain ESM for the Lambda runtime; jest (CommonJS via ts-jest)
// cannot import it, so a child node process does and prints JSON.
const MODULE = path.join(__dirname, '..', 'lambda', 'database-roles', 'index.mjs');
function call(expression: string): any {
  const script = `import * as m from ${JSON.stringify(MODULE)}; console.log(JSON.stringify(await (async () => ${expression})()));`;
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  // The last line: the function under test may log lines of its own before.
  return JSON.parse(out.trim().split('\n').pop()!);
}

describe('database roles function', () => {
  test('computes the SCRAM-SHA-256 verifier PostgreSQL expects', () => {
    // Expected value computed independently with Python's hashlib/hmac (RFC 5802 definitions).
    const verifier = call(`m.scramVerifier('pencil', Buffer.from([...Array(16).keys()]))`);
    expect(verifier).toBe(
      'SCRAM-SHA-256$4096:AAECAwQFBgcICQoLDA0ODw==$zHCdol2044/ZyWzPLi7oxApCkamKw9Z+E4U/QApd/5Y=:dd5peBOitVnLNFu7VmwP+HiDaaw4OUCv396eVCWhYiE=',
    );
    // A fresh salt every time: never the same verifier twice.
    expect(call(`m.scramVerifier('pencil')`)).not.toBe(call(`m.scramVerifier('pencil')`));
  });

  const verifier = 'SCRAM-SHA-256$4096:c2FsdA==$c3RvcmVk:c2VydmVy';

  test('fresh cluster: creates the role, its database owned by it, and shuts PUBLIC out', () => {
    const steps = call(
      `m.serviceStatements({ role: 'booking', database: 'booking', verifier: ${JSON.stringify(verifier)}, roleExists: false, databaseExists: false })`,
    );
    expect(steps.map((s: any) => [s.database, s.sql])).toEqual([
      ['postgres', 'CREATE ROLE "booking" LOGIN'],
      ['postgres', `ALTER ROLE "booking" WITH LOGIN NOCREATEDB NOCREATEROLE PASSWORD '${verifier}'`],
      ['postgres', 'GRANT "booking" TO CURRENT_USER'],
      ['postgres', 'CREATE DATABASE "booking" OWNER "booking"'],
      ['postgres', 'REVOKE ALL ON DATABASE "booking" FROM PUBLIC'],
    ]);
  });

  test('existing database (a deployment from before): ownership moves to the role, tables included', () => {
    const steps = call(
      `m.serviceStatements({ role: 'payment', database: 'payment', verifier: ${JSON.stringify(verifier)}, roleExists: true, databaseExists: true })`,
    );
    const sql = steps.map((s: any) => s.sql);
    expect(sql).not.toContain('CREATE ROLE "payment" LOGIN');
    expect(sql).toContain('ALTER DATABASE "payment" OWNER TO "payment"');
    const transfer = steps.find((s: any) => s.sql.startsWith('DO $$'));
    expect(transfer.database).toBe('payment');
    expect(transfer.sql).toContain("ALTER TABLE %s OWNER TO %I', obj.name, 'payment'");
    expect(transfer.sql).toContain("ALTER ROUTINE %s OWNER TO %I', obj.name, 'payment'");
  });

  test('provision: asks what exists, then runs each service’s steps with the admin secret, verifier from its own password', () => {
    // A fake Data API: the role `booking` and the database `booking` exist already, nothing of payment.
    const result = call(`(async () => {
      const calls = [];
      const aws = {
        async run(props, database, sql, parameters) {
          calls.push({ secret: props.AdminSecretArn, database, sql, name: parameters?.[0]?.value?.stringValue });
          const name = parameters?.[0]?.value?.stringValue;
          return { records: name === 'booking' ? [[{ longValue: 1 }]] : [] };
        },
        async password(arn) { return arn === 'arn:booking' ? 'booking-pw' : 'payment-pw'; },
      };
      await m.provision({
        ClusterArn: 'arn:cluster', AdminSecretArn: 'arn:admin',
        Services: [
          { Role: 'booking', Database: 'booking', SecretArn: 'arn:booking' },
          { Role: 'payment', Database: 'payment', SecretArn: 'arn:payment' },
        ],
      }, aws);
      return calls;
    })()`);
    expect(new Set(result.map((c: any) => c.secret))).toEqual(new Set(['arn:admin']));
    const statements = result.map((c: any) => `${c.database}: ${c.sql.split('\n')[0]}`);
    expect(statements).toEqual([
      'postgres: SELECT 1 FROM pg_roles WHERE rolname = :name',
      'postgres: SELECT 1 FROM pg_database WHERE datname = :name',
      expect.stringMatching(/^postgres: ALTER ROLE "booking" WITH LOGIN NOCREATEDB NOCREATEROLE PASSWORD 'SCRAM-SHA-256\$4096:/),
      'postgres: GRANT "booking" TO CURRENT_USER',
      'postgres: ALTER DATABASE "booking" OWNER TO "booking"',
      'booking: DO $$',
      'postgres: REVOKE ALL ON DATABASE "booking" FROM PUBLIC',
      'postgres: SELECT 1 FROM pg_roles WHERE rolname = :name',
      'postgres: SELECT 1 FROM pg_database WHERE datname = :name',
      'postgres: CREATE ROLE "payment" LOGIN',
      expect.stringMatching(/^postgres: ALTER ROLE "payment" WITH LOGIN NOCREATEDB NOCREATEROLE PASSWORD 'SCRAM-SHA-256\$4096:/),
      'postgres: GRANT "payment" TO CURRENT_USER',
      'postgres: CREATE DATABASE "payment" OWNER "payment"',
      'postgres: REVOKE ALL ON DATABASE "payment" FROM PUBLIC',
    ]);
    // The verifier sent for payment is the one of payment's own password (recomputed with its salt).
    const alter = result.find((c: any) => c.sql.startsWith('ALTER ROLE "payment"')).sql as string;
    const verifier = alter.match(/PASSWORD '([^']+)'/)![1];
    const salt = verifier.split('$')[1].split(':')[1];
    expect(call(`m.scramVerifier('payment-pw', Buffer.from(${JSON.stringify(salt)}, 'base64'))`)).toBe(verifier);
    expect(alter).not.toContain('payment-pw');
  });

  test('retries transient errors (new cluster, IAM propagation) until the deadline, never SQL errors', () => {
    const outcome = call(`(async () => {
      const attempts = { transient: 0, sql: 0, late: 0 };
      const fail = (name) => Object.assign(new Error(name), { name });
      const ok = await m.retrying(async () => {
        if (++attempts.transient < 3) throw fail('DatabaseResumingException');
        return 'done';
      }, Date.now() + 60_000, 1);
      const sql = await m.retrying(async () => { attempts.sql++; throw fail('DatabaseErrorException'); }, Date.now() + 60_000, 1)
        .catch((e) => e.name);
      const late = await m.retrying(async () => { attempts.late++; throw fail('AccessDeniedException'); }, Date.now() + 50, 20)
        .catch((e) => e.name);
      return { ok, sql, late, attempts };
    })()`);
    expect(outcome.ok).toBe('done');
    expect(outcome.attempts.transient).toBe(3);
    expect(outcome.sql).toBe('DatabaseErrorException');
    expect(outcome.attempts.sql).toBe(1);
    expect(outcome.late).toBe('AccessDeniedException');
    expect(outcome.attempts.late).toBeLessThanOrEqual(3);
  });

  test('refuses identifiers that would need quoting and anything that is not a verifier', () => {
    const attempt = (args: string) => () => call(`m.serviceStatements(${args})`);
    expect(attempt(`{ role: 'x"; DROP', database: 'x', verifier: ${JSON.stringify(verifier)} }`)).toThrow(/plain identifier/);
    expect(attempt(`{ role: 'x', database: 'x', verifier: "plain'password" }`)).toThrow(/SCRAM-SHA-256 verifier/);
  });
});
