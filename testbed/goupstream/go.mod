module haltgate.dev/testbed/goupstream

go 1.22
