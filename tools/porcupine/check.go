package main

import (
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/anishathalye/porcupine"
)

// A checkable is one key's operations in porcupine's form, with the model that fits them.
type checkable struct {
	Key   string
	Model porcupine.Model
	Ops   []porcupine.Operation
	// reads[i]: operation i has no effect, so a history without it is weaker (any
	// linearization of the original still fits).
	Reads []bool
	// Source[i]: the recorded operation behind Ops[i].
	Source []op
	// end: the last instant of the history; unknown outcomes return after it.
	end int64
}

var kvModel = porcupine.Model{
	Init:              func() interface{} { return kvState{} },
	Step:              kvStep,
	DescribeOperation: describeKV,
	DescribeState:     describeKVState,
}

var lockModel = porcupine.Model{
	Init:              func() interface{} { return lockState{} },
	Step:              lockStep,
	DescribeOperation: describeLock,
	DescribeState:     describeLockState,
}

// newCheckable converts one key's operations. Unknown outcomes stay open to the end of the
// history: porcupine reads [call, return] as when the operation may take effect, and a
// return after every other event lets it take effect at any later point, or in effect never.
// Reads whose outcome is unknown say nothing and are left out.
func newCheckable(p partition, end int64) (*checkable, error) {
	c := &checkable{Key: p.Key, end: end}
	switch p.Model {
	case "kv":
		c.Model = kvModel
	case "lock":
		c.Model = lockModel
	default:
		return nil, fmt.Errorf("key %q: unknown model %q", p.Key, p.Model)
	}
	for _, o := range p.Ops {
		var input, output interface{}
		var read bool
		if p.Model == "kv" {
			in, out, err := parseKV(o)
			if err != nil {
				return nil, err
			}
			if out.Unknown && isKVRead(in) {
				continue
			}
			input, output, read = in, out, isKVRead(in)
		} else {
			in, out, err := parseLock(o)
			if err != nil {
				return nil, err
			}
			if out.Unknown && in.F == "is_held" {
				continue
			}
			input, output, read = in, out, isLockRead(in, out)
		}
		ret := o.Return
		if o.Unknown {
			ret = end + 1
		}
		c.Ops = append(c.Ops, porcupine.Operation{
			ClientId: o.Process, Input: input, Call: o.Call, Output: output, Return: ret,
		})
		c.Reads = append(c.Reads, read)
		c.Source = append(c.Source, o)
	}
	return c, nil
}

func (c *checkable) check(ops []porcupine.Operation, timeout time.Duration) porcupine.CheckResult {
	return porcupine.CheckOperationsTimeout(c.Model, ops, timeout)
}

// A witness is a small sub-history that is itself not linearizable, and therefore proves the
// whole history is not: the shortest prefix that fails (a history truncated at time T, with
// the operations still running at T made unknown, fails whenever the full history's
// linearization would not fit it), with the operations that have no effect removed one by one
// while it still fails.
type witness struct {
	Ops    []porcupine.Operation
	Source []op
	Steps  int
}

func (c *checkable) minimize(budget time.Duration) witness {
	deadline := time.Now().Add(budget)
	steps := 0
	remaining := func() time.Duration { return max(time.Until(deadline), 100*time.Millisecond) }
	all := make([]int, len(c.Ops))
	for i := range all {
		all[i] = i
	}
	illegal := func(idx []int, cut int64) bool {
		steps++
		ops, _ := c.truncated(idx, cut)
		return len(ops) > 0 && c.check(ops, remaining()) == porcupine.Illegal
	}
	// Candidate cuts: the instants operations returned (a history changes only then), and
	// the end, which the whole history is known to fail at.
	var cuts []int64
	for _, o := range c.Ops {
		if o.Return <= c.end {
			cuts = append(cuts, o.Return)
		}
	}
	sort.Slice(cuts, func(a, b int) bool { return cuts[a] < cuts[b] })
	cuts = append(cuts, math.MaxInt64)
	lo, hi := 0, len(cuts)-1
	for lo < hi && time.Now().Before(deadline) {
		mid := (lo + hi) / 2
		if illegal(all, cuts[mid]) {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	cut := cuts[hi]
	var kept []int
	for _, i := range all {
		if c.Ops[i].Call <= cut {
			kept = append(kept, i)
		}
	}
	sort.SliceStable(kept, func(a, b int) bool { return c.Ops[kept[a]].Call < c.Ops[kept[b]].Call })
	for i := len(kept) - 1; i >= 0 && time.Now().Before(deadline); i-- {
		if !c.Reads[kept[i]] {
			continue
		}
		without := append(append([]int(nil), kept[:i]...), kept[i+1:]...)
		if illegal(without, cut) {
			kept = without
		}
	}
	ops, source := c.truncated(kept, cut)
	return witness{Ops: ops, Source: source, Steps: steps}
}

// truncated: the operations idx as seen at time cut; any still running then is unknown.
func (c *checkable) truncated(idx []int, cut int64) ([]porcupine.Operation, []op) {
	ops := make([]porcupine.Operation, 0, len(idx))
	source := make([]op, 0, len(idx))
	for _, i := range idx {
		o, s := c.Ops[i], c.Source[i]
		if o.Call > cut {
			continue
		}
		if o.Return > cut && cut != math.MaxInt64 {
			if c.Reads[i] {
				continue // an unfinished read says nothing
			}
			o.Return = c.end + 1
			s.Unknown = true
			switch o.Output.(type) {
			case kvOutput:
				o.Output = kvOutput{Unknown: true}
			case lockOutput:
				in := o.Input.(lockInput)
				in.Return = math.MaxInt64
				o.Input = in
				o.Output = lockOutput{Unknown: true}
			}
		}
		ops = append(ops, o)
		source = append(source, s)
	}
	return ops, source
}
