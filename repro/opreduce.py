#!/usr/bin/env python3
"""repro/opreduce.py: op-level delta debugging of a fuzz input (used by
scripts/triage.sh before libFuzzer's -minimize_crash, which works on bytes
and needs many process starts; this pass needs a fast standalone driver).

  opreduce.py --spans SPANS_CMD --run BIN --key KEY --driver D IN OUT

Removes whole ops (their byte spans, from `trace2fuzz --spans`) while `BIN
candidate` still exits non-zero with KEY in its output; byte 0 of a fuzz_mt
input (the thread count) is kept. Writes the smallest input found to OUT."""
import os, shlex, subprocess, sys, tempfile

def main():
    a = sys.argv[1:]
    opt = {}
    while a and a[0].startswith('--'):
        opt[a[0][2:]] = a[1]
        a = a[2:]
    src, out = a
    data = open(src, 'rb').read()
    spans = [tuple(map(int, l.split())) for l in subprocess.run(
        shlex.split(opt['spans']) + ['--driver', opt['driver'], '--spans', src],
        capture_output=True, text=True, check=True).stdout.split('\n') if l.strip()]
    head = data[:spans[0][0]] if spans else data
    ops = [data[o:o + n] for o, n in spans]
    tmp = tempfile.NamedTemporaryFile(delete=False, dir=os.path.dirname(os.path.abspath(out)))
    tmp.close()
    try:  # the candidate file goes whichever way this ends
        return reduce_ops(opt, head, ops, spans, out, data, tmp.name)
    finally:
        os.unlink(tmp.name)


def reduce_ops(opt, head, ops, spans, out, data, tmpname):
    runs = [0]

    def fails(keep):
        runs[0] += 1
        with open(tmpname, 'wb') as f:
            f.write(head + b''.join(keep))
        try:
            r = subprocess.run([opt['run'], tmpname], capture_output=True, timeout=30)
        except subprocess.TimeoutExpired:
            return False
        return r.returncode != 0 and opt['key'].encode() in (r.stdout + r.stderr)

    if not fails(ops):
        print('opreduce: the input does not fail with the key; unchanged', file=sys.stderr)
        open(out, 'wb').write(data)
        return 0
    n = 2
    while len(ops) >= 2 and runs[0] < 2000:
        chunk = max(1, len(ops) // n)
        reduced = False
        for i in range(0, len(ops), chunk):
            cand = ops[:i] + ops[i + chunk:]
            if cand and fails(cand):
                ops = cand
                n = max(n - 1, 2)
                reduced = True
                break
        if not reduced:
            if chunk == 1:
                break
            n = min(len(ops), n * 2)
    open(out, 'wb').write(head + b''.join(ops))
    print('opreduce: %d -> %d ops in %d runs' % (len(spans), len(ops), runs[0]), file=sys.stderr)
    return 0

sys.exit(main())
