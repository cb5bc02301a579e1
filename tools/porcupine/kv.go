package main

import (
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"strconv"
)

// The kv model: one Lockyard StateStore key, as docs/contract.md section 3 specifies it. A key is
// missing, or holds a value and a version (1 on create, +1 per successful mutation); a delete
// makes it missing again, so the next create starts over at version 1. Workloads never give
// these keys a TTL, so time plays no part.
//
// Operations (args -> result of an ok completion):
//
//	set {value}                          -> {}
//	get {}                               -> {value: str|null}
//	get_versioned {}                     -> {value: str|null, version}
//	delete {}                            -> {deleted}
//	check_and_set {value}                -> {created}
//	compare_and_swap {expected, value}   -> {ok, value: str|null, version}
//	                                        | {ok: false, conflict: true} (a refusal that does
//	                                          not say what it found: Kubernetes' 409)
//	increment {delta}                    -> {value: int} | {error: "serialization"}
type kvState struct {
	Exists  bool
	Value   string
	Version int64
}

type kvInput struct {
	F        string
	Value    string
	Expected int64
	Delta    int64
}

type kvOutput struct {
	Unknown       bool
	Present       bool // a value came back (get, get_versioned, compare_and_swap)
	Value         string
	Version       int64
	Flag          bool  // deleted, created, ok
	Number        int64 // increment's new value
	Serialization bool  // increment refused a value that is not a counter, or an overflow
	Conflict      bool  // compare_and_swap refused without the current value and version
}

var kvOps = map[string]bool{
	"set": true, "get": true, "get_versioned": true, "delete": true,
	"check_and_set": true, "compare_and_swap": true, "increment": true,
}

func parseKV(o op) (kvInput, kvOutput, error) {
	var in kvInput
	var out kvOutput
	if !kvOps[o.F] {
		return in, out, fmt.Errorf("%s: unknown kv operation %q", o.ID, o.F)
	}
	in.F = o.F
	var args struct {
		Value    *string `json:"value"`
		Expected *int64  `json:"expected"`
		Delta    *int64  `json:"delta"`
	}
	if len(o.Args) > 0 {
		if err := json.Unmarshal(o.Args, &args); err != nil {
			return in, out, fmt.Errorf("%s: args: %w", o.ID, err)
		}
	}
	need := func(present bool, name string) error {
		if !present {
			return fmt.Errorf("%s: %s needs %q in args", o.ID, o.F, name)
		}
		return nil
	}
	switch o.F {
	case "set", "check_and_set":
		if err := need(args.Value != nil, "value"); err != nil {
			return in, out, err
		}
		in.Value = *args.Value
	case "compare_and_swap":
		if err := need(args.Value != nil && args.Expected != nil, "value and expected"); err != nil {
			return in, out, err
		}
		in.Value, in.Expected = *args.Value, *args.Expected
	case "increment":
		if err := need(args.Delta != nil, "delta"); err != nil {
			return in, out, err
		}
		in.Delta = *args.Delta
	}
	if o.Unknown {
		out.Unknown = true
		return in, out, nil
	}
	var res struct {
		Value    json.RawMessage `json:"value"`
		Version  int64           `json:"version"`
		Deleted  bool            `json:"deleted"`
		Created  bool            `json:"created"`
		OK       bool            `json:"ok"`
		Error    string          `json:"error"`
		Conflict bool            `json:"conflict"`
	}
	if err := json.Unmarshal(o.Result, &res); err != nil {
		return in, out, fmt.Errorf("%s: result: %w", o.ID, err)
	}
	out.Version = res.Version
	switch o.F {
	case "get", "get_versioned", "compare_and_swap":
		var value *string
		if len(res.Value) > 0 {
			if err := json.Unmarshal(res.Value, &value); err != nil {
				return in, out, fmt.Errorf("%s: result value: %w", o.ID, err)
			}
		}
		if value != nil {
			out.Present, out.Value = true, *value
		}
		out.Flag = res.OK
		out.Conflict = o.F == "compare_and_swap" && !res.OK && res.Conflict
	case "delete":
		out.Flag = res.Deleted
	case "check_and_set":
		out.Flag = res.Created
	case "increment":
		if res.Error == "serialization" {
			out.Serialization = true
		} else if err := json.Unmarshal(res.Value, &out.Number); err != nil {
			return in, out, fmt.Errorf("%s: increment result: %w", o.ID, err)
		}
	}
	return in, out, nil
}

// The counter grammar every backend reads (docs/contract.md, Counters).
var counterPattern = regexp.MustCompile(`^(0|-?[1-9][0-9]*)$`)

func counterValue(s kvState) (int64, bool) {
	if !s.Exists {
		return 0, true
	}
	if len(s.Value) > 20 || !counterPattern.MatchString(s.Value) {
		return 0, false
	}
	n, err := strconv.ParseInt(s.Value, 10, 64)
	return n, err == nil
}

func written(s kvState, value string) kvState {
	if !s.Exists {
		return kvState{Exists: true, Value: value, Version: 1}
	}
	return kvState{Exists: true, Value: value, Version: s.Version + 1}
}

func kvStep(state, input, output interface{}) (bool, interface{}) {
	s, in, out := state.(kvState), input.(kvInput), output.(kvOutput)
	switch in.F {
	case "set":
		return true, written(s, in.Value)
	case "get":
		if out.Unknown {
			return true, s
		}
		return out.Present == s.Exists && (!s.Exists || out.Value == s.Value), s
	case "get_versioned":
		if out.Unknown {
			return true, s
		}
		if !s.Exists {
			return !out.Present, s
		}
		return out.Present && out.Value == s.Value && out.Version == s.Version, s
	case "delete":
		return out.Unknown || out.Flag == s.Exists, kvState{}
	case "check_and_set":
		next := s
		if !s.Exists {
			next = kvState{Exists: true, Value: in.Value, Version: 1}
		}
		return out.Unknown || out.Flag == !s.Exists, next
	case "compare_and_swap":
		if s.Exists && s.Version == in.Expected {
			next := kvState{Exists: true, Value: in.Value, Version: s.Version + 1}
			legal := out.Unknown || (out.Flag && out.Present && out.Value == in.Value && out.Version == next.Version)
			return legal, next
		}
		if out.Unknown {
			return true, s
		}
		if out.Flag {
			return false, s
		}
		if out.Conflict {
			return s.Exists, s // the version differs (a missing key is a different answer)
		}
		if !s.Exists {
			return !out.Present && out.Version == 0, s
		}
		return out.Present && out.Value == s.Value && out.Version == s.Version, s
	case "increment":
		current, ok := counterValue(s)
		if ok && ((in.Delta > 0 && current > math.MaxInt64-in.Delta) || (in.Delta < 0 && current < math.MinInt64-in.Delta)) {
			ok = false // the sum leaves signed 64-bit: refused, nothing changes
		}
		if !ok {
			return out.Unknown || out.Serialization, s
		}
		sum := current + in.Delta
		next := written(s, strconv.FormatInt(sum, 10))
		return out.Unknown || (!out.Serialization && out.Number == sum), next
	}
	return false, s
}

func describeKV(input, output interface{}) string {
	in, out := input.(kvInput), output.(kvOutput)
	var call string
	switch in.F {
	case "set", "check_and_set":
		call = fmt.Sprintf("%s(%s)", in.F, short(in.Value))
	case "compare_and_swap":
		call = fmt.Sprintf("cas(v%d -> %s)", in.Expected, short(in.Value))
	case "increment":
		call = fmt.Sprintf("increment(%+d)", in.Delta)
	default:
		call = in.F + "()"
	}
	if out.Unknown {
		return call + " -> ?"
	}
	var result string
	switch in.F {
	case "set":
		result = "ok"
	case "get":
		result = quoteOrNone(out.Present, out.Value)
	case "get_versioned":
		if out.Present {
			result = fmt.Sprintf("%s v%d", short(out.Value), out.Version)
		} else {
			result = "None"
		}
	case "delete", "check_and_set":
		result = strconv.FormatBool(out.Flag)
	case "compare_and_swap":
		if out.Conflict {
			result = "conflict"
		} else {
			result = fmt.Sprintf("ok=%t %s v%d", out.Flag, quoteOrNone(out.Present, out.Value), out.Version)
		}
	case "increment":
		if out.Serialization {
			result = "SerializationError"
		} else {
			result = strconv.FormatInt(out.Number, 10)
		}
	}
	return call + " -> " + result
}

func quoteOrNone(present bool, value string) string {
	if !present {
		return "None"
	}
	return short(value)
}

// short quotes a value, eliding the padding of long ones (their head names the writer).
func short(value string) string {
	if len(value) <= 40 {
		return strconv.Quote(value)
	}
	return fmt.Sprintf("%s...(%d bytes)", strconv.Quote(value[:24]), len(value))
}

func describeKVState(state interface{}) string {
	s := state.(kvState)
	if !s.Exists {
		return "missing"
	}
	return fmt.Sprintf("%s v%d", short(s.Value), s.Version)
}

// isKVRead: an operation without effect, so dropping it only weakens a history.
func isKVRead(in kvInput) bool { return in.F == "get" || in.F == "get_versioned" }
