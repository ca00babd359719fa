import type { Command } from 'commander';
import { stringify } from 'yaml';
import { ConfigSchema } from '../config.js';
import { readEnvironment } from '../config-env.js';
import { configFrom, print } from './context.js';

/**
 * `stowage config`: the effective configuration after file, environment and flags, so an operator
 * of the container image or managed plugin (configured by environment only) can see what the
 * variables did. Secrets are never printed.
 */
export function addConfigCommand(program: Command): void {
  program
    .command('config')
    .description('print the effective configuration (file < environment < flags), secrets redacted')
    .option('--json', 'print JSON instead of YAML')
    .action((opts: { json?: boolean }, cmd: Command) => {
      const { source, ...config } = configFrom(cmd);
      const shown = redact(config);
      if (opts.json) {
        print(JSON.stringify(shown, null, 2));
        return;
      }
      const vars = [...new Set(readEnvironment(ConfigSchema, process.env).origins.values())].sort();
      print(
        [
          `# file: ${source ?? 'none'}`,
          `# environment: ${vars.join(', ') || 'none'}`,
          stringify(shown).trimEnd(),
        ].join('\n'),
      );
    });
}

export const REDACTED = '<redacted>';

/**
 * Keys whose value is a secret: password, secret, token, credential, and key-ish names (etcd.key
 * is only a path, but a path that names a private key is redacted too rather than guessed about).
 * A key naming a file that holds a secret (passwordFile) is shown: the path itself is not secret.
 */
const SECRET = /password|passphrase|secret|token|credential|key$/i;

export function redact(value: unknown, key = ''): unknown {
  if (key !== '' && SECRET.test(key) && !/File$/.test(key) && value !== undefined) return REDACTED;
  if (Array.isArray(value)) return value.map((v) => redact(v));
  if (typeof value === 'object' && value !== null) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, redact(v, k)]));
  }
  return value;
}
