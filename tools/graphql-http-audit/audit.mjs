// graphql-http's GraphQL-over-HTTP server audit, run against a running Labelstream API.
//
//   node audit.mjs <graphql url> [api key]
//
// Prints one JSON line per audit ({id, name, status, reason}) and exits 1 when an audit named
// MUST or SHOULD did not pass (MAY audits are reported, never fatal). The key, when given, is
// sent as `Authorization: Key <key>` on every request, since every operation needs one.
import { auditServer } from 'graphql-http';

const [url, key] = process.argv.slice(2);
if (!url) {
  console.error('usage: node audit.mjs <graphql url> [api key]');
  process.exit(2);
}

const fetchFn = (input, init = {}) => {
  const headers = new Headers(init.headers || {});
  if (key) headers.set('authorization', `Key ${key}`);
  return fetch(input, { ...init, headers });
};

const results = await auditServer({ url, fetchFn });
let failed = 0;
for (const r of results) {
  const level = r.name.split(' ')[0];
  const fatal = (level === 'MUST' || level === 'SHOULD') && r.status !== 'ok';
  if (fatal) failed += 1;
  console.log(JSON.stringify({ id: r.id, name: r.name, status: r.status, reason: r.reason ?? null, fatal }));
}
console.error(`${results.length} audits, ${failed} MUST/SHOULD not passed`);
process.exit(failed ? 1 : 0);
