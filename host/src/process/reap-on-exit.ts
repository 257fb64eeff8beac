/**
 * Child services (a broker node, a store) must not outlive the process that started them: a crashed test or an
 * interrupted CLI would leave them holding ports and data folders. Every launcher registers its children here.
 */
import type { ChildProcess } from "node:child_process";

const running = new Set<ChildProcess>();
let hookInstalled = false;

/** SIGTERMs `child` when this process exits, unless `forget` was called first (it exited on its own). */
export function reapOnExit(child: ChildProcess): { forget(): void } {
  running.add(child);
  if (!hookInstalled) {
    hookInstalled = true;
    process.on("exit", () => {
      for (const c of running) {
        try {
          c.kill("SIGTERM");
        } catch {
          // already gone
        }
      }
    });
  }
  return { forget: () => running.delete(child) };
}
