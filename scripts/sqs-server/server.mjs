// Starts fauxqs, an SQS-compatible server, on 127.0.0.1 only (its own CLI binds
// 0.0.0.0). Port from SQS_PORT (default 9324). Prints "ready <url>" when listening.
import { buildApp } from "fauxqs";

const port = Number(process.env.SQS_PORT ?? 9324);
const host = "127.0.0.1";
const app = buildApp({ logger: false });
await app.listen({ port, host });
console.log(`ready http://${host}:${port}`);

for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, async () => {
    await app.close();
    process.exit(0);
  });
}
