"""The run both benchmark entry points share (start_latency.py, scaling.py): the tools,
the state roots, one Factory, the cleanup stack and its check, the targets table, the JSON
and the plot. Each entry point parses its own arguments and says which parts to run."""
from __future__ import annotations

import os
import sys
import time

import _common as C


def run(args, parts, evaluate):
    """Run `parts` ([(key, fn(args, ctx) -> (results, texts))]) in order; data[key] holds
    each one's results, and evaluate(data) gives the targets rows. args: quick, runs,
    json, plot, state_on_disk."""
    if os.geteuid() != 0:
        raise SystemExit("needs root")
    import pycontainer as pc

    cleanup = C.Cleanup()
    C.Cleanup.install_signal_handlers()
    t_start = time.monotonic()
    data = {"options": vars(args), "context_before": C.machine_context(), "tag": C.RUN_TAG}
    texts = []
    state = None
    try:
        tools = C.Tools(cleanup)
        for n in tools.notes:
            C.log("note:", n)
        # Before any container exists: the cleanup stack unmounts it after they are all gone.
        state = C.StateRoots(tools, cleanup, on_disk=args.state_on_disk)
        data["state_roots"] = state.record()
        data["options"]["state_root"] = data["state_roots"]["kind"]
        data["c_limit_security_file"] = tools.climit_security_lines
        header = f"pycontainer benchmarks {C.RUN_TAG}: state roots {state.describe()}"
        print(header, flush=True)
        texts.append(header)
        factory = pc.Factory(root=state.pycontainer)
        cleanup.push(destroy_all, factory)
        ctx = {"pc": pc, "factory": factory, "tools": tools, "cleanup": cleanup, "state": state}
        for key, part in parts:
            data[key], t = part(args, ctx)
            texts += t
        rows = evaluate(data)
        texts.append(print_targets(rows))
        data["targets"] = [{"target": a, "measured": b, "met": c} for a, b, c in rows]
        data["notes"] = tools.notes
    finally:
        cleanup.run()
        check = C.verify_clean(state)
        data["cleanup_check"] = check
        if not check["clean"] or sys.exc_info()[0] is not None:
            print(f"cleanup check: {check}", flush=True)
    data["context_after"] = C.machine_context()
    data["elapsed_s"] = time.monotonic() - t_start
    print(f"\nelapsed {data['elapsed_s']:.0f} s; load average before {data['context_before']['loadavg']}"
          f", after {data['context_after']['loadavg']}; cleanup check: {check}")
    if args.json:
        C.write_json(args.json, data)
        print(f"json: {args.json}")
    if args.plot:
        msg = C.plot(args.plot, data)
        print(msg)
    return 0




def print_targets(rows):
    lines = ["\n== targets =="]
    w = max([52] + [len(label) + 1 for label, _, _ in rows])
    for label, measured, met in rows:
        verdict = "n/a" if met is None else (met if isinstance(met, str) else
                                             ("MET" if met else "NOT MET"))
        lines.append(f"{label:<{w}} {verdict:<8} {measured}")
    text = "\n".join(lines)
    print(text, flush=True)
    return text


def destroy_all(factory):
    """Destroy every container of the run's factory root, then remove the root. A state dir
    without state.json is what an interrupted create or destroy leaves (cgroups already
    gone, only the lock file): it is removed too."""
    import shutil
    for cid in factory.list():
        try:
            factory.load(cid).destroy()
        except Exception as exc:
            d = os.path.join(factory.root, cid)
            if not os.path.exists(os.path.join(d, "state.json")):
                shutil.rmtree(d, ignore_errors=True)
            else:
                C.log(f"cleanup: destroy {cid}: {exc!r}")
    try:
        os.rmdir(factory.root)
    except FileNotFoundError:
        pass
