"""Compare the outputs of _nninteractive_side.py for two sides: python _nninteractive_compare.py REF_PREFIX OURS_PREFIX"""
import json
import sys

import numpy as np


def main(ref: str, ours: str) -> int:
    a, b = np.load(ref + ".npz"), np.load(ours + ".npz")
    ma, mb = json.load(open(ref + ".json")), json.load(open(ours + ".json"))
    problems = []
    if set(a.files) != set(b.files):
        problems.append(f"array keys differ: {sorted(set(a.files) ^ set(b.files))}")
    n_equal = 0
    for k in sorted(set(a.files) & set(b.files)):
        x, y = a[k], b[k]
        if x.shape != y.shape or x.dtype != y.dtype:
            problems.append(f"{k}: shape/dtype {x.shape} {x.dtype} vs {y.shape} {y.dtype}")
        elif not np.array_equal(x, y):
            d = np.abs(x.astype(np.float64) - y.astype(np.float64))
            problems.append(f"{k}: max |diff| {d.max():.3g}, {int((d > 0).sum())} voxels differ")
        else:
            n_equal += 1
    print(f"{n_equal}/{len(a.files)} arrays bit-identical")

    def strip(m):  # drop timings and paths
        if isinstance(m, dict):
            return {k: strip(v) for k, v in m.items() if k not in ("seconds", "init_s", "total_s", "import_s", "nnunetv2")}
        if isinstance(m, list):
            return [strip(v) for v in m]
        return m

    sa, sb = strip(ma), strip(mb)
    for key in sorted(set(sa) | set(sb)):
        if sa.get(key) != sb.get(key):
            if isinstance(sa.get(key), dict) and isinstance(sb.get(key), dict):
                for k2 in sorted(set(sa[key]) | set(sb[key])):
                    if sa[key].get(k2) != sb[key].get(k2):
                        problems.append(f"meta {key}/{k2}: ref {sa[key].get(k2)!r} | ours {sb[key].get(k2)!r}")
            else:
                problems.append(f"meta {key}: ref {sa.get(key)!r} | ours {sb.get(key)!r}")
    print("nnunetv2:", ma["nnunetv2"], "|", mb["nnunetv2"])
    print(f"import: ref {ma['import_s']} s, ours {mb['import_s']} s")
    for tag in (k for k in ma if isinstance(ma[k], dict) and "steps" in ma[k]):
        print(f"{tag}: init ref {ma[tag]['init_s']} s / ours {mb[tag]['init_s']} s; "
              f"total ref {ma[tag]['total_s']} s / ours {mb[tag]['total_s']} s")
        for sa_, sb_ in zip(ma[tag]["steps"], mb[tag]["steps"]):
            print(f"   {sa_['step']:24s} ref {sa_['seconds']:7.3f} s  ours {sb_['seconds']:7.3f} s  "
                  f"fg {sa_.get('fg_voxels', '-')} / {sb_.get('fg_voxels', '-')}  ret {sa_.get('returned_bbox', '-')}")
    for name, r in ma["search"].items():
        print(f"   trainer search {name}: ref {r['seconds']} s, ours {mb['search'][name]['seconds']} s")
    print("\n".join(problems) if problems else "NO DIFFERENCES")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
