// ForwardAuth: the MAC that authenticates norikv's internal commands
// (NORI.WRITE, NORI.READ, NORI.PEER) between the nodes of one cluster.
//
// What it is for: a node forwards a write entry or a read to the shard's
// leader over the leader's client port (kv/forward.h). Without a check, any
// client that can reach that port could inject a log entry of its choosing.
// Every internal command therefore carries a tag, a keyed BLAKE2b-128
// (libsodium crypto_generichash) over the command name and every other
// argument, each length-prefixed, under a key derived from the cluster
// secret (the same secret that authenticates the peer handshake, --secret).
// A node refuses an internal command whose tag does not verify (constant-time
// comparison) with -NOAUTH, before decoding anything else.
//
// What it does not do: it does not encrypt, and it does not stop a replay of
// a captured command by someone on the network path (a replayed write is
// absorbed by its client session while that session is kept, kv/store.h).
//
// Threading: immutable after construction; any thread.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace nori::kv {

class ForwardAuth {
 public:
  static constexpr size_t kTagBytes = 16;
  explicit ForwardAuth(std::string_view cluster_secret);

  // The tag of an internal command: `name` and `args` (every argument but
  // the tag itself, in order). Returned as kTagBytes raw bytes.
  std::string tag(std::string_view name, std::span<const std::string> args) const;
  bool verify(std::string_view name, std::span<const std::string> args, std::string_view tag) const;

 private:
  std::array<unsigned char, 32> key_{};
};

}  // namespace nori::kv
