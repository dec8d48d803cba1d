// nori-node: one raft::Node driven over stdin/stdout (see node_process.h).
#include "bench/nori-bench/node_process.h"

int main(int argc, char** argv) {
  return nori::bench::node_process_main(argc, argv);
}
