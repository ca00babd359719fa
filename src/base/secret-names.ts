/**
 * Names (object keys, environment variables) whose values are taken for secrets: logs mask them,
 * and the flexvolume executable's config cache never writes a config that one of them set.
 */
export const SECRET_NAME =
  /secret|password|passwd|token|credential|authorization|apikey|privatekey|accesskey/i;
