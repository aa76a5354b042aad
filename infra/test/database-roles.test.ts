import { execFileSync } from 'node:child_process';
import * as path from 'node:path';

// The custom resource's function is plain ESM for the Lambda runtime; jest (CommonJS via ts-jest)
// cannot import it, so a child node process does and prints JSON.
const MODULE = path.join(__dirname, '..', 'lambda', 'database-roles', 'index.mjs');
function call(expression: string): any {
  const script = `import * as m from ${JSON.stringify(MODULE)}; console.log(JSON.stringify(await (async () => ${expression})()));`;
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  return JSON.parse(out);
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

  test('refuses identifiers that would need quoting and anything that is not a verifier', () => {
    const attempt = (args: string) => () => call(`m.serviceStatements(${args})`);
    expect(attempt(`{ role: 'x"; DROP', database: 'x', verifier: ${JSON.stringify(verifier)} }`)).toThrow(/plain identifier/);
    expect(attempt(`{ role: 'x', database: 'x', verifier: "plain'password" }`)).toThrow(/SCRAM-SHA-256 verifier/);
  });
});
