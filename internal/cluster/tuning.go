package cluster

import (
	"time"

	"github.com/examnode/examnode/node"
)

// FastTuning is the tuning of the demo and the tests: periodic exchanges
// every 2 s and redials at most 1 s apart.
func FastTuning() node.Tuning {
	return node.Tuning{
		ExchangeInterval: node.Duration(2 * time.Second),
		RedialMax:        node.Duration(time.Second),
	}
}
