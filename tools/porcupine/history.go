package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"sort"
)

// An event is one line of a recorded history (JSON lines, as lockyard_dev.jepsen writes them).
//
//	{"type":"invoke","process":3,"id":"w1-17","key":"r1","model":"kv","f":"set","args":{"value":"a"},"time":123}
//	{"type":"ok","process":3,"id":"w1-17","result":{},"time":456}
//
// type is invoke, ok (completed, result known), fail (certainly had no effect) or info (the
// outcome is unknown: a timeout or a lost connection; it may have taken effect, at any time
// after its invocation, or never). nemesis lines mark faults for the visualization. time is
// CLOCK_MONOTONIC in nanoseconds, one clock for every process on the host.
type event struct {
	Type    string          `json:"type"`
	Process int             `json:"process"`
	ID      string          `json:"id"`
	Key     string          `json:"key"`
	Model   string          `json:"model"`
	F       string          `json:"f"`
	Args    json.RawMessage `json:"args"`
	Result  json.RawMessage `json:"result"`
	Time    int64           `json:"time"`
	What    string          `json:"what"`
}

// An op is an invocation paired with its completion.
type op struct {
	Process int
	ID      string
	Key     string
	Model   string
	F       string
	Args    json.RawMessage
	Result  json.RawMessage
	Call    int64
	Return  int64 // math.MaxInt64 while the outcome is unknown
	Unknown bool
}

type nemesis struct {
	Time int64
	What string
}

type history struct {
	Ops      []op
	Nemeses  []nemesis
	Failed   int // completed with fail: no effect, not checked
	Start    int64
	End      int64
	Unpaired int // completions without an invocation (a malformed history)
}

func readHistory(r io.Reader) (*history, error) {
	h := &history{Start: math.MaxInt64, End: math.MinInt64}
	pending := map[string]*op{}
	var order []string
	scanner := bufio.NewScanner(r)
	scanner.Buffer(make([]byte, 1<<20), 64<<20)
	line := 0
	for scanner.Scan() {
		line++
		if len(scanner.Bytes()) == 0 {
			continue
		}
		var e event
		if err := json.Unmarshal(scanner.Bytes(), &e); err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		h.Start = min(h.Start, e.Time)
		h.End = max(h.End, e.Time)
		switch e.Type {
		case "nemesis":
			h.Nemeses = append(h.Nemeses, nemesis{Time: e.Time, What: e.What})
		case "invoke":
			if _, dup := pending[e.ID]; dup {
				return nil, fmt.Errorf("line %d: operation %q invoked twice", line, e.ID)
			}
			if e.Model != "kv" && e.Model != "lock" {
				return nil, fmt.Errorf("line %d: unknown model %q (kv, lock)", line, e.Model)
			}
			pending[e.ID] = &op{
				Process: e.Process, ID: e.ID, Key: e.Key, Model: e.Model, F: e.F,
				Args: e.Args, Call: e.Time, Return: math.MaxInt64, Unknown: true,
			}
			order = append(order, e.ID)
		case "ok", "fail", "info":
			o, found := pending[e.ID]
			if !found || !o.Unknown || o.Return != math.MaxInt64 {
				h.Unpaired++
				continue
			}
			switch e.Type {
			case "ok":
				o.Result, o.Return, o.Unknown = e.Result, e.Time, false
			case "fail":
				h.Failed++
				o.Return = math.MinInt64 // marks it dropped
			case "info":
				// Unknown: may take effect at any point after its call, so it stays open.
			}
		default:
			return nil, fmt.Errorf("line %d: unknown event type %q", line, e.Type)
		}
	}
	if err := scanner.Err(); err != nil {
		return nil, err
	}
	for _, id := range order {
		o := pending[id]
		if o.Return == math.MinInt64 {
			continue
		}
		h.Ops = append(h.Ops, *o)
	}
	sort.SliceStable(h.Nemeses, func(i, j int) bool { return h.Nemeses[i].Time < h.Nemeses[j].Time })
	return h, nil
}

// A partition is the operations on one key: each key is an independent object, and the
// history is linearizable exactly when every key's sub-history is (linearizability is local).
type partition struct {
	Key   string
	Model string
	Ops   []op
}

func partitionByKey(ops []op) ([]partition, error) {
	index := map[string]int{}
	var parts []partition
	for _, o := range ops {
		i, found := index[o.Key]
		if !found {
			i = len(parts)
			index[o.Key] = i
			parts = append(parts, partition{Key: o.Key, Model: o.Model})
		}
		if parts[i].Model != o.Model {
			return nil, fmt.Errorf("key %q is used with models %s and %s", o.Key, parts[i].Model, o.Model)
		}
		parts[i].Ops = append(parts[i].Ops, o)
	}
	return parts, nil
}
