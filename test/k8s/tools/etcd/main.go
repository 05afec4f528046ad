// etcd's server as a command of our own module, so that its version is pinned by this go.mod/go.sum.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
