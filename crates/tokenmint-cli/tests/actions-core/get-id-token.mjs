// Fetches an OIDC token exactly as a GitHub Actions step would, with @actions/core's getIDToken.
// Reads ACTIONS_ID_TOKEN_REQUEST_URL / ACTIONS_ID_TOKEN_REQUEST_TOKEN from the environment and
// writes the token to the file named by argv[3], so it never reaches a log.
import * as core from '@actions/core';
import { writeFileSync } from 'node:fs';

const [audience, out] = process.argv.slice(2);
const token = await core.getIDToken(audience);
writeFileSync(out, token);
