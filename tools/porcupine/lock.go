package main

import (
	"encoding/json"
	"fmt"
	"math"
)

// The lock model: one Lockyard lock name, as a register of its holder with fencing tokens
// (docs/contract.md section 4). Every acquisition has its own owner (an id the workload gives
// the attempt), and a lease of ttl_ms that the backend starts when it executes the call.
//
// Operations (args -> result of an ok completion):
//
//	acquire {owner, ttl_ms}   -> {token} | {busy: true}    (try_acquire, acquire with timeout 0)
//	extend  {owner, ttl_ms}   -> {held}
//	release {owner}           -> {held}
//	is_held {owner}           -> {held}
//
// Leases make the model depend on time, which porcupine's sequential model does not see; the
// operations carry their own call and return times instead. The backend executes an operation
// at some instant inside [call, return] (one clock for every process on the host), so a lease
// taken by an operation called at c and returning at r ends no earlier than c + ttl and no
// later than r + ttl. Another owner may therefore take the lock only in an operation that
// returns after c + ttl, and a "busy" answer needs an operation called before r + ttl. Eps
// absorbs the backends' millisecond rounding. Fencing tokens must strictly increase.
//
// An acquire whose outcome is unknown may have taken the lock at any instant after its call
// (a delayed request), and its owner never acts again. Rather than branch on which of them
// holds the lock when (exponential in their number), the model keeps one flag: from then on
// an unseen lease may be live, so a "busy" answer is always explained. Such a lease cannot
// explain anything else: it could only have begun once the visible holder's lease ended, and
// a later acquisition may have come after it expired. This accepts every history the exact
// model accepts (and a few more), so it never reports a false violation.
type lockState struct {
	Holder    string // "" when no lease can be live
	LeaseCall int64  // the call of the operation that started the holder's current lease
	LeaseRet  int64  // its return; math.MaxInt64 when its outcome is unknown
	TTL       int64  // nanoseconds
	MaxToken  int64
	Phantom   bool // an acquire with unknown outcome was invoked before this point
}

type lockInput struct {
	F      string
	Owner  string
	TTL    int64 // nanoseconds
	Call   int64
	Return int64 // math.MaxInt64 when the outcome is unknown
}

type lockOutput struct {
	Unknown bool
	Busy    bool
	Token   int64
	Held    bool
}

// eps is set from -eps-ms.
var eps int64 = 5 * 1e6

var lockOps = map[string]bool{"acquire": true, "extend": true, "release": true, "is_held": true}

func parseLock(o op) (lockInput, lockOutput, error) {
	var in lockInput
	var out lockOutput
	if !lockOps[o.F] {
		return in, out, fmt.Errorf("%s: unknown lock operation %q", o.ID, o.F)
	}
	var args struct {
		Owner string `json:"owner"`
		TTLms int64  `json:"ttl_ms"`
	}
	if err := json.Unmarshal(o.Args, &args); err != nil {
		return in, out, fmt.Errorf("%s: args: %w", o.ID, err)
	}
	if args.Owner == "" {
		return in, out, fmt.Errorf("%s: %s needs an owner", o.ID, o.F)
	}
	if (o.F == "acquire" || o.F == "extend") && args.TTLms <= 0 {
		return in, out, fmt.Errorf("%s: %s needs ttl_ms > 0", o.ID, o.F)
	}
	in = lockInput{F: o.F, Owner: args.Owner, TTL: args.TTLms * 1e6, Call: o.Call, Return: o.Return}
	if o.Unknown {
		out.Unknown = true
		in.Return = math.MaxInt64
		return in, out, nil
	}
	var res struct {
		Token *int64 `json:"token"`
		Busy  bool   `json:"busy"`
		Held  bool   `json:"held"`
	}
	if err := json.Unmarshal(o.Result, &res); err != nil {
		return in, out, fmt.Errorf("%s: result: %w", o.ID, err)
	}
	switch {
	case o.F != "acquire":
		out.Held = res.Held
	case res.Busy:
		out.Busy = true
	case res.Token != nil:
		out.Token = *res.Token
	default:
		return in, out, fmt.Errorf("%s: acquire result needs token or busy", o.ID)
	}
	return in, out, nil
}

func satAdd(a, b int64) int64 {
	if b > 0 && a > math.MaxInt64-b {
		return math.MaxInt64
	}
	if b < 0 && a < math.MinInt64-b {
		return math.MinInt64
	}
	return a + b
}

// possiblyLive: the holder's lease may still run when an operation called at call executes.
func possiblyLive(s lockState, call int64) bool {
	return s.Holder != "" && call < satAdd(satAdd(s.LeaseRet, s.TTL), eps)
}

// possiblyEnded: the lease may have ended when an operation returning at ret executed.
func possiblyEnded(s lockState, ret int64) bool {
	return s.Holder == "" || ret >= satAdd(satAdd(s.LeaseCall, s.TTL), -eps)
}

// takeoverCall: the earliest instant a new lease can begin (the old one must have ended).
func takeoverCall(s lockState, call int64) int64 {
	if s.Holder == "" {
		return call
	}
	return max(call, satAdd(satAdd(s.LeaseCall, s.TTL), -eps))
}

func lockStep(state, input, output interface{}) (bool, interface{}) {
	s, in, out := state.(lockState), input.(lockInput), output.(lockOutput)
	mine := s.Holder == in.Owner
	freed := s
	freed.Holder, freed.LeaseCall, freed.LeaseRet, freed.TTL = "", 0, 0, 0
	switch in.F {
	case "acquire":
		if out.Unknown {
			next := s
			next.Phantom = true
			return true, next
		}
		if out.Busy {
			return s.Phantom || possiblyLive(s, in.Call), s
		}
		if !possiblyEnded(s, in.Return) || out.Token <= s.MaxToken {
			return false, s
		}
		next := lockState{
			Holder: in.Owner, LeaseCall: takeoverCall(s, in.Call), LeaseRet: in.Return,
			TTL: in.TTL, MaxToken: out.Token, Phantom: s.Phantom,
		}
		return true, next
	case "extend":
		if out.Unknown || out.Held {
			if mine && possiblyLive(s, in.Call) {
				next := s
				next.LeaseCall, next.LeaseRet, next.TTL = in.Call, in.Return, in.TTL
				return true, next
			}
			return out.Unknown, s
		}
		if mine {
			return possiblyEnded(s, in.Return), freed
		}
		return true, s
	case "release":
		if out.Unknown {
			if mine {
				return true, freed
			}
			return true, s
		}
		if out.Held {
			return mine && possiblyLive(s, in.Call), freed
		}
		if mine {
			return possiblyEnded(s, in.Return), freed
		}
		return true, s
	case "is_held":
		if out.Unknown {
			return true, s
		}
		if out.Held {
			return mine && possiblyLive(s, in.Call), s
		}
		if mine {
			return possiblyEnded(s, in.Return), freed
		}
		return true, s
	}
	return false, s
}

func describeLock(input, output interface{}) string {
	in, out := input.(lockInput), output.(lockOutput)
	call := fmt.Sprintf("%s(%s", in.F, shortOwner(in.Owner))
	if in.F == "acquire" || in.F == "extend" {
		call += fmt.Sprintf(", ttl=%dms", in.TTL/1e6)
	}
	call += ")"
	switch {
	case out.Unknown:
		return call + " -> ?"
	case in.F != "acquire":
		return fmt.Sprintf("%s -> %t", call, out.Held)
	case out.Busy:
		return call + " -> busy"
	default:
		return fmt.Sprintf("%s -> token %d", call, out.Token)
	}
}

func describeLockState(state interface{}) string {
	s := state.(lockState)
	phantom := ""
	if s.Phantom {
		phantom = ", maybe an unseen holder"
	}
	if s.Holder == "" {
		return fmt.Sprintf("free (max token %d%s)", s.MaxToken, phantom)
	}
	return fmt.Sprintf("held by %s, max token %d%s", shortOwner(s.Holder), s.MaxToken, phantom)
}

func shortOwner(owner string) string {
	if len(owner) > 16 {
		return owner[:16]
	}
	return owner
}

// isLockRead: an operation without effect, so dropping it only weakens a history.
func isLockRead(in lockInput, out lockOutput) bool {
	return (in.F == "is_held" && (out.Unknown || out.Held)) || (in.F == "acquire" && out.Busy)
}
