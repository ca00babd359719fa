/**
 * What a bench must undo (children, mounts, loop devices, services, temp dirs), undone in reverse
 * order on success, failure and Ctrl-C alike: push onto `cleanups`, run the bench with runBench.
 */
export const cleanups: Array<() => Promise<unknown>> = [];

let interrupted = false;

async function cleanup(): Promise<void> {
  while (cleanups.length > 0) {
    await cleanups.pop()!().catch((err: unknown) =>
      process.stderr.write(`bench: cleanup failed: ${String(err)}\n`),
    );
  }
}

/**
 * Runs `main`, then the cleanups; a failure is reported (with its stack) and sets exit code 1.
 * SIGINT or SIGTERM runs the cleanups and exits 130; the error a request then fails with (its
 * daemon going away) is not worth a stack trace.
 */
export async function runBench(main: () => Promise<void>): Promise<void> {
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      interrupted = true;
      process.stderr.write(`bench: ${signal}, cleaning up\n`);
      void cleanup().finally(() => process.exit(130));
    });
  }
  try {
    await main();
  } catch (err) {
    if (!interrupted)
      process.stderr.write(`bench: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = 1;
  } finally {
    await cleanup();
  }
}
