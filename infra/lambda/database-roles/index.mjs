// CloudFormation custom resource: one PostgreSQL role and one database per service, through the
// Aurora Data API with the cluster's admin secret. Each role owns its database and nothing else;
// PUBLIC loses CONNECT on it, so neither service can open the other's database.
//
// Why here and not in the services: they would need the admin secret to create roles, which is
// what this replaces. Why the Data API: no Lambda in the VPC, no PostgreSQL driver to bundle (the
// Node.js runtime ships the AWS SDK), nothing to run by hand.
//
// The password never leaves Secrets Manager and this function: the SQL carries only its
// SCRAM-SHA-256 verifier, which PostgreSQL stores as given (like psql's \password).
//
// Idempotent, so Create and Update run the same steps; Delete keeps roles and databases (the data
// belongs to the cluster, which leaves a final snapshot).
import { createHash, createHmac, pbkdf2Sync, randomBytes } from 'node:crypto';
import https from 'node:https';

const IDENTIFIER = /^[a-z_][a-z0-9_]{0,62}$/;

/** SCRAM-SHA-256 verifier as PostgreSQL stores it (RFC 5802/7677, 4096 iterations). */
export function scramVerifier(password, salt = randomBytes(16), iterations = 4096) {
  const salted = pbkdf2Sync(password.normalize('NFKC'), salt, iterations, 32, 'sha256');
  const clientKey = createHmac('sha256', salted).update('Client Key').digest();
  const storedKey = createHash('sha256').update(clientKey).digest();
  const serverKey = createHmac('sha256', salted).update('Server Key').digest();
  const b64 = (b) => b.toString('base64');
  return `SCRAM-SHA-256$${iterations}:${b64(salt)}$${b64(storedKey)}:${b64(serverKey)}`;
}

function quoteIdent(name) {
  if (!IDENTIFIER.test(name)) throw new Error(`not a plain identifier: ${name}`);
  return `"${name}"`;
}

/**
 * The statements for one service, in order. `exists` answers the two existence questions the
 * caller asks first (CREATE DATABASE cannot run in a DO block or a transaction).
 * Each item: { database, sql } — `database` is where the statement runs.
 */
export function serviceStatements({ role, database, verifier, roleExists, databaseExists }) {
  const r = quoteIdent(role);
  const d = quoteIdent(database);
  if (!/^SCRAM-SHA-256\$\d+:[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+:[A-Za-z0-9+/=]+$/.test(verifier)) {
    throw new Error('not a SCRAM-SHA-256 verifier');
  }
  const steps = [];
  if (!roleExists) steps.push({ database: 'postgres', sql: `CREATE ROLE ${r} LOGIN` });
  steps.push({
    database: 'postgres',
    sql: `ALTER ROLE ${r} WITH LOGIN NOCREATEDB NOCREATEROLE PASSWORD '${verifier}'`,
  });
  // The admin must be able to act as the role to hand it a database (PostgreSQL 16+: SET ROLE).
  steps.push({ database: 'postgres', sql: `GRANT ${r} TO CURRENT_USER` });
  if (!databaseExists) {
    steps.push({ database: 'postgres', sql: `CREATE DATABASE ${d} OWNER ${r}` });
  } else {
    steps.push({ database: 'postgres', sql: `ALTER DATABASE ${d} OWNER TO ${r}` });
    // A deployment from before this resource: the service ran its migrations as the admin, so
    // the admin owns the tables. Hand every object in `public` owned by the admin to the role.
    steps.push({
      database,
      sql: `DO $$
DECLARE obj record;
BEGIN
  FOR obj IN SELECT c.oid::regclass AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm')
               AND c.relowner = (SELECT oid FROM pg_roles WHERE rolname = current_user) LOOP
    EXECUTE format('ALTER TABLE %s OWNER TO %I', obj.name, '${role}');
  END LOOP;
  FOR obj IN SELECT p.oid::regprocedure AS name FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
             WHERE n.nspname = 'public'
               AND p.proowner = (SELECT oid FROM pg_roles WHERE rolname = current_user) LOOP
    EXECUTE format('ALTER ROUTINE %s OWNER TO %I', obj.name, '${role}');
  END LOOP;
END $$`,
    });
  }
  steps.push({ database: 'postgres', sql: `REVOKE ALL ON DATABASE ${d} FROM PUBLIC` });
  return steps;
}

// ---- AWS side: only what the handler needs, loaded lazily so the pure parts test without the SDK.

// Worth waiting out: a cluster just created or resuming, and IAM still propagating the grants
// this function received a moment ago. SQL errors (DatabaseErrorException) are not retried.
const TRANSIENT = new Set([
  'DatabaseResumingException',
  'DatabaseUnavailableException',
  'DatabaseNotFoundException',
  'HttpEndpointNotEnabledException',
  'StatementTimeoutException',
  'InternalServerErrorException',
  'ServiceUnavailableError',
  'ThrottlingException',
  'AccessDeniedException',
  'ForbiddenException',
]);

/** Calls `fn` until it succeeds, a non-transient error, or `deadline` (ms since epoch). */
export async function retrying(fn, deadline, pauseMs = 10_000) {
  for (;;) {
    try {
      return await fn();
    } catch (e) {
      if (!TRANSIENT.has(e.name) || Date.now() + pauseMs >= deadline) throw e;
      await new Promise((resolve) => setTimeout(resolve, pauseMs));
    }
  }
}

async function clients(deadline) {
  const { RDSDataClient, ExecuteStatementCommand } = await import('@aws-sdk/client-rds-data');
  const { SecretsManagerClient, GetSecretValueCommand } = await import('@aws-sdk/client-secrets-manager');
  const data = new RDSDataClient({});
  const secrets = new SecretsManagerClient({});
  return {
    run: (props, database, sql, parameters) =>
      retrying(
        () =>
          data.send(
            new ExecuteStatementCommand({
              resourceArn: props.ClusterArn,
              secretArn: props.AdminSecretArn,
              database,
              sql,
              parameters,
            }),
          ),
        deadline,
      ),
    password: async (secretArn) => {
      const out = await retrying(() => secrets.send(new GetSecretValueCommand({ SecretId: secretArn })), deadline);
      return JSON.parse(out.SecretString).password;
    },
  };
}

/** All services' steps, in order. `aws` is { run(props, database, sql, parameters), password(secretArn) }. */
export async function provision(props, aws) {
  const exists = async (sql, name) =>
    ((await aws.run(props, 'postgres', sql, [{ name: 'name', value: { stringValue: name } }])).records ?? []).length > 0;
  for (const service of props.Services) {
    const steps = serviceStatements({
      role: service.Role,
      database: service.Database,
      verifier: scramVerifier(await aws.password(service.SecretArn)),
      roleExists: await exists('SELECT 1 FROM pg_roles WHERE rolname = :name', service.Role),
      databaseExists: await exists('SELECT 1 FROM pg_database WHERE datname = :name', service.Database),
    });
    for (const step of steps) await aws.run(props, step.database, step.sql);
    console.log(JSON.stringify({ role: service.Role, database: service.Database, statements: steps.length }));
  }
}

function respond(event, status, reason) {
  const body = JSON.stringify({
    Status: status,
    Reason: reason,
    PhysicalResourceId: event.PhysicalResourceId ?? `${event.LogicalResourceId}-service-roles`,
    StackId: event.StackId,
    RequestId: event.RequestId,
    LogicalResourceId: event.LogicalResourceId,
    Data: {},
  });
  return new Promise((resolve, reject) => {
    const request = https.request(
      event.ResponseURL,
      { method: 'PUT', headers: { 'content-type': '', 'content-length': Buffer.byteLength(body) } },
      (response) => {
        response.resume();
        response.on('end', resolve);
      },
    );
    request.on('error', reject);
    request.end(body);
  });
}

export async function handler(event, context) {
  try {
    if (event.RequestType === 'Create' || event.RequestType === 'Update') {
      // Stop retrying a minute before the function's timeout, so CloudFormation always gets an
      // answer (a function that times out answers nothing, and the stack waits).
      const deadline = Date.now() + context.getRemainingTimeInMillis() - 60_000;
      await provision(event.ResourceProperties, await clients(deadline));
    }
    await respond(event, 'SUCCESS', 'ok');
  } catch (e) {
    console.error(e);
    // Never the SQL or a secret in the reason: only the error's name and message.
    await respond(event, 'FAILED', `${e.name}: ${e.message}`.slice(0, 500));
  }
}
