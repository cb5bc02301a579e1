// Command lockyard-porcupine checks a recorded Lockyard history for linearizability with
// porcupine (github.com/anishathalye/porcupine).
//
// Usage:
//
//	lockyard-porcupine [-out DIR] [-timeout 60s] [-minimize 60s] [-eps-ms 5] HISTORY.jsonl
//
// The history is JSON lines of invoke/ok/fail/info events (see history.go); "-" reads stdin.
// Each key is checked on its own against its model (kv.go, lock.go). The verdict goes to
// stdout as one JSON object; for every key that is not linearizable the verdict carries a
// small failing sub-history as text, and -out receives porcupine's HTML drawing of it.
// Exit status 0 whatever the verdict (the caller reads it), 2 on a usage or input error.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
)

type keyVerdict struct {
	Key        string  `json:"key"`
	Model      string  `json:"model"`
	Operations int     `json:"operations"`
	Unknown    int     `json:"unknown_outcomes"`
	Verdict    string  `json:"verdict"`
	Seconds    float64 `json:"seconds"`
	Note       string  `json:"note,omitempty"`
}

type witnessOp struct {
	Process  int      `json:"process"`
	ID       string   `json:"id"`
	CallMs   float64  `json:"call_ms"`
	ReturnMs *float64 `json:"return_ms"` // null: outcome unknown
	Text     string   `json:"text"`
}

type violation struct {
	Key        string      `json:"key"`
	Model      string      `json:"model"`
	Operations int         `json:"operations"`
	Witness    []witnessOp `json:"witness"`
	Text       string      `json:"text"`
	HTML       string      `json:"html,omitempty"`
	Steps      int         `json:"minimize_checks"`
}

type report struct {
	Verdict    string       `json:"verdict"`
	Operations int          `json:"operations"`
	Unknown    int          `json:"unknown_outcomes"`
	Failed     int          `json:"failed"`
	Keys       []keyVerdict `json:"keys"`
	Violations []violation  `json:"violations"`
	Seconds    float64      `json:"seconds"`
	// MemoryLimitHit: some keys were left undecided at -max-memory-mb.
	MemoryLimitHit bool `json:"memory_limit_hit"`
}

var memoryLimit int64 = 1 << 30

func main() {
	out := flag.String("out", "", "folder for the HTML drawing of each violation")
	timeout := flag.Duration("timeout", 60*time.Second, "checking budget per key (then the verdict is unknown)")
	minimizeBudget := flag.Duration("minimize", 60*time.Second, "budget to shrink each violation")
	epsMs := flag.Float64("eps-ms", 5, "slack on lease bounds, for the backends' millisecond rounding")
	maxMemoryMB := flag.Int64("max-memory-mb", 1024, "give up (verdict unknown) on keys still being checked when the heap passes this")
	flag.Usage = func() {
		fmt.Fprintln(flag.CommandLine.Output(), "usage: lockyard-porcupine [flags] HISTORY.jsonl|-")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	eps = int64(*epsMs * 1e6)
	memoryLimit = *maxMemoryMB << 20
	debug.SetMemoryLimit(memoryLimit)
	rep, err := run(flag.Arg(0), *out, *timeout, *minimizeBudget)
	if err != nil {
		fmt.Fprintln(os.Stderr, "lockyard-porcupine:", err)
		os.Exit(2)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(rep); err != nil {
		fmt.Fprintln(os.Stderr, "lockyard-porcupine:", err)
		os.Exit(2)
	}
}

func run(path, outDir string, timeout, minimizeBudget time.Duration) (*report, error) {
	started := time.Now()
	var r io.Reader = os.Stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	h, err := readHistory(r)
	if err != nil {
		return nil, err
	}
	if h.Unpaired > 0 {
		return nil, fmt.Errorf("%d completions have no matching invocation", h.Unpaired)
	}
	parts, err := partitionByKey(h.Ops)
	if err != nil {
		return nil, err
	}
	checks := make([]*checkable, len(parts))
	for i, p := range parts {
		if checks[i], err = newCheckable(p, h.End); err != nil {
			return nil, err
		}
	}
	rep := &report{Failed: h.Failed, Keys: make([]keyVerdict, len(parts)), Violations: []violation{}}
	results := make([]porcupine.CheckResult, len(parts))
	finished := make([]bool, len(parts))
	var mu sync.Mutex
	// Keys are independent: check a few at once (the machine is shared). A search that
	// grows past the memory limit cannot be stopped from outside porcupine, so the
	// verdict is given without it: its key is undecided.
	work := make(chan int, len(parts))
	for i := range parts {
		work <- i
	}
	close(work)
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), 2) {
		wg.Go(func() {
			for i := range work {
				t0 := time.Now()
				result := checks[i].check(checks[i].Ops, timeout)
				unknown := 0
				for _, s := range checks[i].Source {
					if s.Unknown {
						unknown++
					}
				}
				mu.Lock()
				results[i], finished[i] = result, true
				rep.Keys[i] = keyVerdict{
					Key: parts[i].Key, Model: parts[i].Model, Operations: len(checks[i].Ops),
					Unknown: unknown, Verdict: verdictName(result), Seconds: time.Since(t0).Seconds(),
				}
				mu.Unlock()
			}
		})
	}
	go func() { wg.Wait(); close(done) }()
	overflow := false
	ticker := time.NewTicker(500 * time.Millisecond)
	defer ticker.Stop()
wait:
	for {
		select {
		case <-done:
			break wait
		case <-ticker.C:
			var stats runtime.MemStats
			runtime.ReadMemStats(&stats)
			if int64(stats.HeapAlloc) > memoryLimit {
				overflow = true
				break wait
			}
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for i := range parts {
		if !finished[i] {
			results[i] = porcupine.Unknown
			rep.Keys[i] = keyVerdict{
				Key: parts[i].Key, Model: parts[i].Model, Operations: len(checks[i].Ops),
				Verdict: "unknown", Note: "stopped at the memory limit",
			}
		}
	}
	rep.MemoryLimitHit = overflow

	rep.Verdict = "ok"
	for i, k := range rep.Keys {
		rep.Operations += k.Operations
		rep.Unknown += k.Unknown
		switch results[i] {
		case porcupine.Illegal:
			rep.Verdict = "illegal"
			v, err := explain(checks[i], parts[i], h, outDir, minimizeBudget)
			if err != nil {
				return nil, err
			}
			rep.Violations = append(rep.Violations, v)
		case porcupine.Unknown:
			if rep.Verdict == "ok" {
				rep.Verdict = "unknown"
			}
		}
	}
	sort.SliceStable(rep.Keys, func(a, b int) bool { return rep.Keys[a].Key < rep.Keys[b].Key })
	rep.Seconds = time.Since(started).Seconds()
	return rep, nil
}

func verdictName(r porcupine.CheckResult) string {
	switch r {
	case porcupine.Ok:
		return "ok"
	case porcupine.Illegal:
		return "illegal"
	}
	return "unknown"
}

// explain shrinks a failing key's history and renders it as text and as porcupine's HTML.
func explain(c *checkable, p partition, h *history, outDir string, budget time.Duration) (violation, error) {
	w := c.minimize(budget)
	v := violation{Key: c.Key, Model: p.Model, Operations: len(c.Ops), Steps: w.Steps}
	order := make([]int, len(w.Ops))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return w.Ops[order[a]].Call < w.Ops[order[b]].Call })
	ms := func(t int64) float64 { return float64(t-h.Start) / 1e6 }
	describe := describeKV
	if p.Model == "lock" {
		describe = describeLock
	}
	lines := make([]string, len(w.Ops))
	first, last := int64(1<<62), int64(0)
	for _, i := range order {
		o, s := w.Ops[i], w.Source[i]
		wo := witnessOp{Process: s.Process, ID: s.ID, CallMs: ms(o.Call), Text: describe(o.Input, o.Output)}
		until := "?"
		if !s.Unknown {
			r := ms(o.Return)
			wo.ReturnMs = &r
			until = fmt.Sprintf("%.1f", r)
			last = max(last, o.Return)
		}
		first = min(first, o.Call)
		last = max(last, o.Call)
		v.Witness = append(v.Witness, wo)
		lines[i] = fmt.Sprintf("%10.1f .. %-10s ms  process %-4d %s", wo.CallMs, until, s.Process, wo.Text)
	}
	result, info := porcupine.CheckOperationsVerbose(c.Model, w.Ops, budget)
	var text strings.Builder
	fmt.Fprintf(&text, "key %q (%s model): %d of its %d operations, which no order explains\n",
		c.Key, p.Model, len(w.Ops), len(c.Ops))
	text.WriteString(stuckAt(c.Model, w.Ops, info, lines, order))
	for _, n := range h.Nemeses {
		if n.Time >= first && n.Time <= last {
			fmt.Fprintf(&text, "  %10.1f ms  nemesis: %s\n", ms(n.Time), n.What)
		}
	}
	if result != porcupine.Illegal {
		// The witness failed within the budget while shrinking; say so rather than draw an
		// unrelated linearization.
		fmt.Fprintf(&text, "  (checking the witness again gave %s within %s)\n", result, budget)
	}
	v.Text = text.String()
	if outDir == "" {
		return v, nil
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return v, err
	}
	var notes []porcupine.Annotation
	for _, n := range h.Nemeses {
		if n.Time >= first && n.Time <= last {
			notes = append(notes, porcupine.Annotation{Tag: "nemesis", Start: n.Time, Description: n.What})
		}
	}
	info.AddAnnotations(notes)
	v.HTML = filepath.Join(outDir, safeName(c.Key)+".html")
	if err := porcupine.VisualizePath(c.Model, info, v.HTML); err != nil {
		return v, err
	}
	return v, nil
}

// stuckAt says where the checker got stuck, for a person: the longest order it found, the
// state that order ends in, and the operations none of which can come next. Short witnesses
// are listed whole.
func stuckAt(model porcupine.Model, ops []porcupine.Operation, info porcupine.LinearizationInfo, lines []string, order []int) string {
	var text strings.Builder
	if len(ops) <= 12 {
		for _, i := range order {
			text.WriteString("  " + lines[i] + "\n")
		}
		return text.String()
	}
	var longest []int
	for _, partition := range info.PartialLinearizations() {
		for _, seq := range partition {
			if len(seq) > len(longest) {
				longest = seq
			}
		}
	}
	state := model.Init()
	placed := make(map[int]bool, len(longest))
	for _, i := range longest {
		_, state = model.Step(state, ops[i].Input, ops[i].Output)
		placed[i] = true
	}
	fmt.Fprintf(&text, "  the longest order found takes %d of them and ends in state %s; its last steps:\n",
		len(longest), model.DescribeState(state))
	for _, i := range longest[max(0, len(longest)-3):] {
		text.WriteString("  " + lines[i] + "\n")
	}
	text.WriteString("  none of these can come next:\n")
	for _, i := range order {
		if !placed[i] {
			text.WriteString("  " + lines[i] + "\n")
		}
	}
	return text.String()
}

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

func safeName(key string) string {
	return "violation-" + strings.Trim(unsafeChars.ReplaceAllString(key, "_"), "_")
}
