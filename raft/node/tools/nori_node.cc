// nori-node: one raft::Node driven over stdin/stdout (see node_process.h).
#include "raft/node/tools/node_process.h"

int main(int argc, char** argv) {
  return nori::raft::tools::node_process_main(argc, argv);
}
