/** Parses `strace -f` output into completed system calls, in the order they returned. */
export function completedCalls(trace: string): string[] {
  const pending = new Map<string, string>();
  const done: string[] = [];
  for (const line of trace.split("\n")) {
    const m = /^(\d+)\s+(.*)$/.exec(line);
    if (!m) continue;
    const pid = m[1]!;
    const body = m[2]!;
    if (body.endsWith("<unfinished ...>")) {
      pending.set(pid, body.slice(0, -"<unfinished ...>".length));
    } else if (body.startsWith("<...")) {
      // "<... fsync resumed>) = 0" completes the call the same thread started earlier.
      done.push((pending.get(pid) ?? "") + body.replace(/^<\.\.\. \w+ resumed>/, ""));
      pending.delete(pid);
    } else if (!body.startsWith("+++") && !body.startsWith("---")) {
      done.push(body);
    }
  }
  return done;
}
