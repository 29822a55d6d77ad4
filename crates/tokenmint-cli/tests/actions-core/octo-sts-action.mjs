// Replays octo-sts/action's request sequence (its index.js main step and post.js post step) against tokenmint.
//
// Written from octo-sts/action's source, not copied. Two differences, both forced by a local test:
// the exchange URL's scheme comes from OCTO_STS_SCHEME (the action hard-codes https; `tokenmint dev`
// serves http on loopback), and the post step's https://api.github.com comes from GITHUB_API_URL
// (the GitHub API stand-in). Everything else is the action's: the inputs arrive as INPUT_SCOPE,
// INPUT_IDENTITY and INPUT_DOMAIN, the OIDC token is requested with audience = domain, the exchange
// is GET /sts/exchange?scope=S&scopes=S&identity=I with the token as a bearer token, `token` is read
// from the JSON answer (`message` on failure), the token is masked and appended to $GITHUB_OUTPUT and
// $GITHUB_STATE, and the post step revokes it with DELETE /installation/token, sending only
// Authorization.
//
// Usage: node octo-sts-action.mjs main   |   node octo-sts-action.mjs post   (STATE_token set by the runner)
import * as core from '@actions/core';
import { appendFileSync } from 'node:fs';

const step = process.argv[2];

if (step === 'main') {
  const scope = process.env.INPUT_SCOPE;
  const identity = process.env.INPUT_IDENTITY;
  const domain = process.env.INPUT_DOMAIN;
  const scheme = process.env.OCTO_STS_SCHEME ?? 'https';
  if (!scope || !identity) {
    console.log("::error::Missing required inputs 'scope' and 'identity'");
    process.exit(1);
  }
  // 1. ACTIONS_ID_TOKEN_REQUEST_URL&audience=<domain>, through @actions/core.
  const idToken = await core.getIDToken(domain);
  // 2. The exchange, with `scopes` as the action sends it (a comma-separated list of one).
  const scopes = [scope].join(',');
  const res = await fetch(
    `${scheme}://${domain}/sts/exchange?scope=${scope}&scopes=${scopes}&identity=${identity}`,
    { headers: { Authorization: `Bearer ${idToken}` } },
  );
  const body = await res.json().catch(() => ({}));
  if (!res.ok || !body.token) {
    console.log(`::error::exchange answered ${res.status}: ${body.message}`);
    process.exit(1);
  }
  const token = body.token;
  console.log(`::add-mask::${token}`);
  appendFileSync(process.env.GITHUB_OUTPUT, `token=${token}\n`);
  appendFileSync(process.env.GITHUB_STATE, `token=${token}\n`);
} else if (step === 'post') {
  // 3. Revoke, as the post step does.
  const token = process.env.STATE_token;
  if (!token) {
    console.log('::warning::Token not found in state.');
    process.exit(0);
  }
  const api = process.env.GITHUB_API_URL ?? 'https://api.github.com';
  const res = await fetch(`${api}/installation/token`, {
    method: 'DELETE',
    headers: { Authorization: `Bearer ${token}` },
  });
  // Like the action, report the outcome without failing the job.
  if (res.status === 204) {
    console.log('revoked: 204');
  } else {
    console.log(`::error::${res.status} ${res.statusText}`);
  }
} else {
  console.log('usage: node octo-sts-action.mjs main|post');
  process.exit(2);
}
