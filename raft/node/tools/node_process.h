// The node process of nori-bench and of the cluster tests (`nori-node`, or
// `nori-bench node ...`): one raft::Node controlled over stdin/stdout with
// one JSON object per line (the protocol is in docs/bench.md, "Node
// process"). Workload clients run inside the process, on the group's core
// (proposals from a client in the same process, as the targets ask).
#pragma once

namespace nori::raft::tools {

int node_process_main(int argc, char** argv);

}  // namespace nori::raft::tools
