// nori-wal-dump: prints a WAL directory's segments and records, for people
// debugging a node. Read-only.
//
//   nori-wal-dump <dir>                 segments, a summary per segment, recovery verdict
//   nori-wal-dump <dir> --records       every record too
//   nori-wal-dump <dir> --groups        every group's index after recovery
#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <map>

#include "wal/format.h"
#include "wal/posix_dir.h"
#include "wal/recovery.h"

using namespace nori::wal;

namespace {

void print_record(const RecordView& rec) {
  fmt::print("  @{:<10} {:<13} {:>8} B", rec.offset, kind_name(rec.kind), rec.body.size());
  switch (static_cast<RecordKind>(rec.kind)) {
    case RecordKind::kSegmentOpen: {
      auto b = decode_segment_open(rec.body);
      if (b) fmt::print("  prev_seq={} prev_end={}", b->prev_seq, b->prev_end);
      break;
    }
    case RecordKind::kEntries: {
      auto b = decode_entries(rec.body);
      if (b) {
        fmt::print("  group={} index={}..{} runs={}", b->group, b->first_index,
                   b->first_index + b->payloads.size() - 1, b->runs.size());
        for (const auto& r : b->runs)
          fmt::print(" [term {} x{}]", r.term, r.count);
      } else {
        fmt::print("  UNPARSEABLE: {}", b.error().message());
      }
      break;
    }
    case RecordKind::kHardState: {
      auto b = decode_hard_state(rec.body);
      if (b) {
        fmt::print("  group={} term={} vote={} commit={}", b->group, b->hs.term, b->hs.vote,
                   b->hs.commit);
      }
      break;
    }
    case RecordKind::kTruncate: {
      auto b = decode_truncate(rec.body);
      if (b) fmt::print("  group={} last_kept={}", b->group, b->last_kept);
      break;
    }
    case RecordKind::kCompact: {
      auto b = decode_compact(rec.body);
      if (b) fmt::print("  group={} index={} term={}", b->group, b->index, b->term);
      break;
    }
    case RecordKind::kCheckpoint: {
      auto b = decode_checkpoint(rec.body);
      if (b) {
        fmt::print("  group={} term={} vote={} commit={} compact={}@{}", b->group, b->hs.term,
                   b->hs.vote, b->hs.commit, b->compact_index, b->compact_term);
      }
      break;
    }
    case RecordKind::kReset: {
      auto b = decode_reset(rec.body);
      if (b) {
        fmt::print("  group={} index={} term={} (log dropped, next append {})", b->group, b->index,
                   b->term, b->index + 1);
      } else {
        fmt::print("  UNPARSEABLE: {}", b.error().message());
      }
      break;
    }
    case RecordKind::kRemoveGroup: {
      auto b = decode_remove_group(rec.body);
      if (b) {
        fmt::print("  group={} (removed: its earlier records are void)", b->group);
      } else {
        fmt::print("  UNPARSEABLE: {}", b.error().message());
      }
      break;
    }
    default:
      break;
  }
  fmt::print("\n");
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"nori-wal-dump: print a nori WAL directory"};
  std::string dir;
  bool records = false;
  bool groups = false;
  app.add_option("dir", dir, "WAL directory")->required();
  app.add_flag("--records", records, "print every record");
  app.add_flag("--groups", groups, "print every group's recovered index");
  CLI11_PARSE(app, argc, argv);

  PosixSegmentSource source(dir);
  auto names = source.list();
  if (!names) {
    fmt::print(stderr, "{}\n", names.error().to_string());
    return 2;
  }
  std::sort(names->begin(), names->end());
  std::string bytes;
  for (const auto& name : *names) {
    uint64_t seq = 0;
    if (!parse_segment_file_name(name, &seq)) {
      fmt::print("{}  (not a segment)\n", name);
      continue;
    }
    auto st = source.read_all(name, kSegmentBytesMax, &bytes);
    if (!st.ok()) {
      fmt::print("{}  read error: {}\n", name, st.error().to_string());
      continue;
    }
    auto h = decode_segment_header(bytes);
    if (!h) {
      fmt::print("{}  {} bytes, BAD HEADER: {}\n", name, bytes.size(), h.error().message());
      continue;
    }
    fmt::print("{}  {} bytes, v{} log_id={:#018x} seq={} window={} B\n", name, bytes.size(),
               h->version, h->log_id, h->seq, h->tail_window_bytes);
    std::map<uint8_t, uint64_t> counts;
    uint64_t n = 0;
    const uint64_t end =
        scan_records(bytes, h->log_id, h->seq, bytes.size(), [&](const RecordView& rec) {
          ++counts[rec.kind];
          ++n;
          if (records) print_record(rec);
          return true;
        });
    fmt::print("  {} valid records up to offset {}", n, end);
    for (auto [k, c] : counts)
      fmt::print(", {} {}", c, kind_name(k));
    fmt::print("\n");
  }
  auto rec = recover(source);
  if (!rec) {
    fmt::print("recovery: FAILED: {}\n", rec.error().to_string());
    return 1;
  }
  fmt::print("recovery: ok, {} segments with data, {} records, {} groups, tail {}{}\n",
             rec->segments.size(), rec->records, rec->groups.size(),
             rec->segments.empty() ? 0 : rec->segments.back().end,
             rec->torn_tail ? fmt::format(" (torn tail dropped at {})", rec->torn_tail_offset)
                            : std::string());
  if (groups) {
    std::vector<uint64_t> ids;
    for (const auto& [id, g] : rec->groups)
      ids.push_back(id);
    std::sort(ids.begin(), ids.end());
    for (uint64_t id : ids) {
      const GroupLog& g = rec->groups.at(id);
      const std::string held = g.entry_count() == 0
                                   ? std::string("none")
                                   : fmt::format("{}..{}", g.first_index(), g.last_index());
      fmt::print(
          "group {}: entries {} last {} starts after {}@{} hard state term={} vote={} commit={}\n",
          id, held, g.last_index(), g.compact_index(), g.compact_term(), g.hard_state().term,
          g.hard_state().vote, g.hard_state().commit);
    }
  }
  return 0;
}
