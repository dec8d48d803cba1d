// The norikv command table and key -> shard -> Raft group routing.
//
// What it is for: the server looks every command up here to learn whether it
// is a replicated write, a read of one or more shards, or answered by the
// node itself, and where its keys live.
//
// Sharding: shard(key) = XXH3_64(key) mod shards, a fixed count every node of
// a cluster must agree on (--shards). Shard s is Raft group s + 1 (group 0
// does not exist in nori-raft), placed on core (s + 1) mod cores by
// raft::placement. Multi-key commands (DEL, EXISTS, MGET, MSET) are split by
// shard: each shard's part is atomic (one log entry), the command as a whole
// is not atomic across shards (docs/kv.md).
//
// Threading: pure functions and a constant table.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "raft/types.h"

namespace nori::kv {

enum class CommandKind : uint8_t {
  kWrite,  // replicated through the shard's log
  kRead,   // served from a shard's state once the node grants the read
  kLocal,  // answered by the receiving node (PING, INFO, CONFIG, ...)
};

struct CommandSpec {
  std::string_view name;  // uppercase
  CommandKind kind;
  int arity;      // Redis convention: N exact, -N at least N (name included)
  int first_key;  // 0: no keys
  int key_step;   // 1: every argument from first_key is a key; 2: key value pairs
};

// nullptr for an unknown command. `name` in any case.
const CommandSpec* find_command(std::string_view name);
const std::vector<CommandSpec>& command_table();

uint32_t shard_of(std::string_view key, uint32_t shards);
inline raft::GroupId group_of_shard(uint32_t shard) {
  return raft::GroupId{shard} + 1;
}

}  // namespace nori::kv
