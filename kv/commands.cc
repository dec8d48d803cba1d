#include "kv/commands.h"

#include "runtime/base/bytes.h"

namespace nori::kv {

const std::vector<CommandSpec>& command_table() {
  static const std::vector<CommandSpec> table = {
      {"GET", CommandKind::kRead, 2, 1, 1},        {"STRLEN", CommandKind::kRead, 2, 1, 1},
      {"MGET", CommandKind::kRead, -2, 1, 1},      {"EXISTS", CommandKind::kRead, -2, 1, 1},
      {"SET", CommandKind::kWrite, -3, 1, 0},      {"DEL", CommandKind::kWrite, -2, 1, 1},
      {"APPEND", CommandKind::kWrite, 3, 1, 0},    {"INCR", CommandKind::kWrite, 2, 1, 0},
      {"DECR", CommandKind::kWrite, 2, 1, 0},      {"INCRBY", CommandKind::kWrite, 3, 1, 0},
      {"DECRBY", CommandKind::kWrite, 3, 1, 0},    {"MSET", CommandKind::kWrite, -3, 1, 2},
      {"PING", CommandKind::kLocal, -1, 0, 0},     {"ECHO", CommandKind::kLocal, 2, 0, 0},
      {"DBSIZE", CommandKind::kLocal, 1, 0, 0},    {"INFO", CommandKind::kLocal, -1, 0, 0},
      {"COMMAND", CommandKind::kLocal, -1, 0, 0},  {"CONFIG", CommandKind::kLocal, -2, 0, 0},
      {"QUIT", CommandKind::kLocal, 1, 0, 0},      {"READONLY", CommandKind::kLocal, 1, 0, 0},
      {"READWRITE", CommandKind::kLocal, 1, 0, 0}, {"SELECT", CommandKind::kLocal, 2, 0, 0},
      {"CLIENT", CommandKind::kLocal, -2, 0, 0},   {"BGSAVE", CommandKind::kLocal, -1, 0, 0},
      {"CLUSTER", CommandKind::kLocal, -2, 0, 0},
  };
  return table;
}

const CommandSpec* find_command(std::string_view name) {
  if (name.size() > 16) return nullptr;
  char up[16];
  for (size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    up[i] = (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c;
  }
  const std::string_view u(up, name.size());
  for (const auto& spec : command_table()) {
    if (spec.name == u) return &spec;
  }
  return nullptr;
}

uint32_t shard_of(std::string_view key, uint32_t shards) {
  return static_cast<uint32_t>(base::xxh3_64(key) % shards);
}

}  // namespace nori::kv
