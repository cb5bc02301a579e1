// Lockyard's linearizability checker: a small main module of our own (the Go files beside
// this one) built on porcupine, pinned with every dependency (go.sum) for
// scripts/build-go-tools.sh. make jepsen and tests/jepsen feed it recorded histories.
module lockyard.dev/tools/porcupine

go 1.26.0

tool lockyard.dev/tools/porcupine

require github.com/anishathalye/porcupine v1.3.1
