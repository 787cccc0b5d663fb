#!/usr/bin/env node
// The `conclave` command: loads the TypeScript CLI through tsx so a clone works after `npm ci` with no build step.
import { register } from 'tsx/esm/api';

register();
await import('../src/cli/main.ts');
