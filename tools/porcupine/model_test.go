package main

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

const ms = int64(1e6)

// verdictOf checks a history written as JSON lines.
func verdictOf(t *testing.T, lines ...string) porcupine.CheckResult {
	t.Helper()
	h, err := readHistory(strings.NewReader(strings.Join(lines, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	parts, err := partitionByKey(h.Ops)
	if err != nil {
		t.Fatal(err)
	}
	verdict := porcupine.Ok
	for _, p := range parts {
		c, err := newCheckable(p, h.End)
		if err != nil {
			t.Fatal(err)
		}
		if r := c.check(c.Ops, 10*time.Second); r != porcupine.Ok {
			verdict = r
		}
	}
	return verdict
}

func TestKVRegister(t *testing.T) {
	write := `{"type":"invoke","process":0,"id":"a","key":"k","model":"kv","f":"set","args":{"value":"x"},"time":0}`
	written := `{"type":"ok","process":0,"id":"a","result":{},"time":10}`
	readX := []string{
		`{"type":"invoke","process":1,"id":"b","key":"k","model":"kv","f":"get","args":{},"time":20}`,
		`{"type":"ok","process":1,"id":"b","result":{"value":"x"},"time":30}`,
	}
	readNone := []string{
		`{"type":"invoke","process":1,"id":"b","key":"k","model":"kv","f":"get","args":{},"time":20}`,
		`{"type":"ok","process":1,"id":"b","result":{"value":null},"time":30}`,
	}
	if v := verdictOf(t, append([]string{write, written}, readX...)...); v != porcupine.Ok {
		t.Errorf("read after write: %s", v)
	}
	if v := verdictOf(t, append([]string{write, written}, readNone...)...); v != porcupine.Illegal {
		t.Errorf("stale read after an acknowledged write: %s, want Illegal", v)
	}
	unknown := `{"type":"info","process":0,"id":"a","time":10}`
	if v := verdictOf(t, append([]string{write, unknown}, readNone...)...); v != porcupine.Ok {
		t.Errorf("a timed-out write may not have happened: %s", v)
	}
	if v := verdictOf(t, append([]string{write, unknown}, readX...)...); v != porcupine.Ok {
		t.Errorf("a timed-out write may have happened: %s", v)
	}
}

func TestKVCompareAndSwap(t *testing.T) {
	base := []string{
		`{"type":"invoke","process":0,"id":"a","key":"k","model":"kv","f":"check_and_set","args":{"value":"x"},"time":0}`,
		`{"type":"ok","process":0,"id":"a","result":{"created":true},"time":10}`,
		`{"type":"invoke","process":0,"id":"b","key":"k","model":"kv","f":"compare_and_swap","args":{"expected":1,"value":"y"},"time":20}`,
		`{"type":"ok","process":0,"id":"b","result":{"ok":true,"value":"y","version":2},"time":30}`,
	}
	twice := append(append([]string{}, base...),
		`{"type":"invoke","process":1,"id":"c","key":"k","model":"kv","f":"compare_and_swap","args":{"expected":1,"value":"z"},"time":40}`,
		`{"type":"ok","process":1,"id":"c","result":{"ok":true,"value":"z","version":2},"time":50}`,
	)
	if v := verdictOf(t, base...); v != porcupine.Ok {
		t.Errorf("create then swap: %s", v)
	}
	if v := verdictOf(t, twice...); v != porcupine.Illegal {
		t.Errorf("two swaps won on one version: %s, want Illegal", v)
	}
	conflict := func(expected string) []string {
		return append(append([]string{}, base...),
			`{"type":"invoke","process":1,"id":"c","key":"k","model":"kv","f":"compare_and_swap","args":{"expected":`+expected+`,"value":"z"},"time":40}`,
			`{"type":"ok","process":1,"id":"c","result":{"ok":false,"conflict":true},"time":50}`,
		)
	}
	if v := verdictOf(t, conflict("1")...); v != porcupine.Ok {
		t.Errorf("a conflict on a stale version: %s", v)
	}
	if v := verdictOf(t, conflict("2")...); v != porcupine.Illegal {
		t.Errorf("a conflict on the current version: %s, want Illegal", v)
	}
}

func TestKVCounter(t *testing.T) {
	inc := func(id string, process int, call, ret int64, value string) []string {
		return []string{
			`{"type":"invoke","process":` + itoa(int64(process)) + `,"id":"` + id + `","key":"c","model":"kv","f":"increment","args":{"delta":1},"time":` + itoa(call) + `}`,
			`{"type":"ok","process":` + itoa(int64(process)) + `,"id":"` + id + `","result":{"value":` + value + `},"time":` + itoa(ret) + `}`,
		}
	}
	ok := append(inc("a", 0, 0, 10, "1"), inc("b", 1, 5, 20, "2")...)
	if v := verdictOf(t, ok...); v != porcupine.Ok {
		t.Errorf("two increments: %s", v)
	}
	lost := append(inc("a", 0, 0, 10, "1"), inc("b", 1, 20, 30, "1")...)
	if v := verdictOf(t, lost...); v != porcupine.Illegal {
		t.Errorf("a lost increment: %s, want Illegal", v)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func lockOp(id, f, owner string, process int, call, ret int64, result string) []string {
	args := `{"owner":"` + owner + `","ttl_ms":1000}`
	lines := []string{`{"type":"invoke","process":` + itoa(int64(process)) + `,"id":"` + id +
		`","key":"L","model":"lock","f":"` + f + `","args":` + args + `,"time":` + itoa(call) + `}`}
	if result == "" {
		return append(lines, `{"type":"info","process":`+itoa(int64(process))+`,"id":"`+id+`","time":`+itoa(ret)+`}`)
	}
	return append(lines, `{"type":"ok","process":`+itoa(int64(process))+`,"id":"`+id+`","result":`+result+`,"time":`+itoa(ret)+`}`)
}

func TestLockLeases(t *testing.T) {
	first := lockOp("a", "acquire", "A", 0, 0, 10*ms, `{"token":1}`)
	// B takes the lock 500 ms into A's 1 s lease: too early.
	early := append(append([]string{}, first...), lockOp("b", "acquire", "B", 1, 500*ms, 510*ms, `{"token":2}`)...)
	if v := verdictOf(t, early...); v != porcupine.Illegal {
		t.Errorf("takeover of a live lease: %s, want Illegal", v)
	}
	late := append(append([]string{}, first...), lockOp("b", "acquire", "B", 1, 1200*ms, 1210*ms, `{"token":2}`)...)
	if v := verdictOf(t, late...); v != porcupine.Ok {
		t.Errorf("takeover after the lease: %s", v)
	}
	reused := append(append([]string{}, first...), lockOp("b", "acquire", "B", 1, 1200*ms, 1210*ms, `{"token":1}`)...)
	if v := verdictOf(t, reused...); v != porcupine.Illegal {
		t.Errorf("a fencing token handed out twice: %s, want Illegal", v)
	}
	released := append(append(append([]string{}, first...),
		lockOp("r", "release", "A", 0, 100*ms, 110*ms, `{"held":true}`)...),
		lockOp("b", "acquire", "B", 1, 120*ms, 130*ms, `{"token":2}`)...)
	if v := verdictOf(t, released...); v != porcupine.Ok {
		t.Errorf("acquire after release: %s", v)
	}
	busyWhenFree := append(append(append([]string{}, first...),
		lockOp("r", "release", "A", 0, 100*ms, 110*ms, `{"held":true}`)...),
		lockOp("b", "acquire", "B", 1, 120*ms, 130*ms, `{"busy":true}`)...)
	if v := verdictOf(t, busyWhenFree...); v != porcupine.Illegal {
		t.Errorf("busy after a confirmed release: %s, want Illegal", v)
	}
	extended := append(append(append([]string{}, first...),
		lockOp("e", "extend", "A", 0, 800*ms, 810*ms, `{"held":true}`)...),
		lockOp("b", "acquire", "B", 1, 1200*ms, 1210*ms, `{"token":2}`)...)
	if v := verdictOf(t, extended...); v != porcupine.Illegal {
		t.Errorf("takeover of an extended lease: %s, want Illegal", v)
	}
	// A timed-out acquire may hold the lock: B's busy answer is then explained.
	unknown := append(lockOp("a", "acquire", "A", 0, 0, 10*ms, ""),
		lockOp("b", "acquire", "B", 1, 500*ms, 510*ms, `{"busy":true}`)...)
	if v := verdictOf(t, unknown...); v != porcupine.Ok {
		t.Errorf("busy after an unknown acquire: %s", v)
	}
	// ... and a timed-out acquire that never happened does not block anyone.
	unknownThenFree := append(lockOp("a", "acquire", "A", 0, 0, 10*ms, ""),
		lockOp("b", "acquire", "B", 1, 500*ms, 510*ms, `{"token":3}`)...)
	if v := verdictOf(t, unknownThenFree...); v != porcupine.Ok {
		t.Errorf("acquire after an unknown acquire: %s", v)
	}
}

func TestMinimizeKeepsAFailingWitness(t *testing.T) {
	var lines []string
	for i := int64(0); i < 40; i++ {
		id := "r" + itoa(i)
		lines = append(lines,
			`{"type":"invoke","process":1,"id":"`+id+`","key":"k","model":"kv","f":"get","args":{},"time":`+itoa(i*100)+`}`,
			`{"type":"ok","process":1,"id":"`+id+`","result":{"value":null},"time":`+itoa(i*100+10)+`}`)
	}
	lines = append(lines,
		`{"type":"invoke","process":0,"id":"w","key":"k","model":"kv","f":"set","args":{"value":"x"},"time":5000}`,
		`{"type":"ok","process":0,"id":"w","result":{},"time":5010}`,
		`{"type":"invoke","process":1,"id":"stale","key":"k","model":"kv","f":"get","args":{},"time":5100}`,
		`{"type":"ok","process":1,"id":"stale","result":{"value":null},"time":5110}`)
	h, err := readHistory(strings.NewReader(strings.Join(lines, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	parts, _ := partitionByKey(h.Ops)
	c, err := newCheckable(parts[0], h.End)
	if err != nil {
		t.Fatal(err)
	}
	w := c.minimize(10 * time.Second)
	if len(w.Ops) != 2 {
		t.Fatalf("witness has %d operations, want the write and the stale read", len(w.Ops))
	}
	if porcupine.CheckOperations(c.Model, w.Ops) {
		t.Fatal("the witness is linearizable")
	}
}
