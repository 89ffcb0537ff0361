"""Summarise a bigalloc dump: live bytes grouped by caller frames, largest first, with the sizes in each group.

    python benchmarks/alloc_trace/summarise.py /tmp/trace.<pid>.high [frames=3]
"""
import sys, collections
lines=open(sys.argv[1]).read().splitlines()
print(lines[0])
depth=int(sys.argv[2]) if len(sys.argv)>2 else 4
agg=collections.Counter(); cnt=collections.Counter(); sizes=collections.defaultdict(collections.Counter)
for l in lines[1:]:
    parts=l.split(); n=int(parts[0]); kind=parts[1]; frames=parts[2:]
    key=(kind,)+tuple(frames[:depth])
    agg[key]+=n; cnt[key]+=1; sizes[key][n]+=1
tot=sum(agg.values()); print("total GiB", tot/2**30)
for k,v in agg.most_common(15):
    print(f"{v/2**30:7.3f} GiB {cnt[k]:5d} allocs", k, [(s/2**20, c) for s,c in sizes[k].most_common(6)])
