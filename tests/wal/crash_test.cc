// The crash test: a forked writer appends under load on real O_DIRECT files
// and reports each durable append on a pipe (its acknowledgements); the
// parent kills it with SIGKILL at a random moment, recovers the directory and
// checks that every acknowledged entry, hard state and group reset is present
// and intact (an entry a later reset dropped counts as covered by it).
// Many kills in a row on the same directory, so each writer also starts from
// a log that a previous one left torn.
//
// Default: 20 kills (label unit). NORI_WAL_CRASH_KILLS=N for more (the soak
// test runs 300).
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <random>
#include <string>

#include "runtime/base/bytes.h"
#include "runtime/runtime.h"
#include "wal/posix_dir.h"
#include "wal/wal.h"

namespace nori::wal {
namespace {

using runtime::Task;
namespace fs = std::filesystem;

constexpr uint64_t kGroups = 8;
constexpr int kWritersPerChild = 4;

WalOptions crash_options() {
  WalOptions o;
  o.segment_bytes = 1 << 20;
  o.write_bytes_max = 64 << 10;
  o.writes_in_flight_max = 4;
  o.cache_bytes_max = 256 << 10;
  o.free_segments_max = 2;
  return o;
}

// The payload is a function of (group, index, term): the parent can check
// any entry without having seen it.
std::string payload_of(uint64_t g, uint64_t i, uint64_t term) {
  const uint64_t h = base::xxh3_64(fmt::format("{}/{}/{}", g, i, term));
  std::string p = fmt::format("g{}i{}t{}:", g, i, term);
  const size_t len = 16 + h % 3000;
  while (p.size() < len)
    p.push_back(static_cast<char>('A' + (h + p.size()) % 26));
  return p;
}

void ack(int fd, const std::string& line) {
  // A short blocking write to a pipe, in test code only.
  const std::string l = line + "\n";
  (void)::write(fd, l.data(), l.size());
}

Task<void> writer(Wal& w, uint64_t term, int id, int out_fd, std::mt19937_64 rng) {
  for (;;) {
    const uint64_t g = 1 + (id + rng() % 2 * kWritersPerChild) % kGroups;
    const GroupLog* gl = w.group(g);
    const uint64_t first = (gl ? gl->last_index() : 0) + 1;
    const size_t n = 1 + rng() % 8;
    std::vector<std::string> payloads;
    std::vector<std::string_view> views;
    std::vector<uint64_t> terms(n, term);
    for (size_t k = 0; k < n; ++k)
      payloads.push_back(payload_of(g, first + k, term));
    for (auto& p : payloads)
      views.push_back(p);
    auto pos = w.append_entries(g, first, terms, views);
    if (!pos) {
      if (pos.error().kind() == base::ErrorKind::kBusy ||
          pos.error().kind() == base::ErrorKind::kInvalidArgument) {
        (void)co_await w.wait_writable();  // kInvalidArgument: another writer raced on g
        continue;
      }
      NORI_PANIC("append failed: {}", pos.error().to_string());
    }
    std::optional<Position> hs;
    if (rng() % 4 == 0) {
      auto h = w.persist_hard_state(g, HardState{term, g, first + n - 1});
      if (h) hs = *h;
    }
    if (rng() % 16 == 0 && first > 200) {
      // A snapshot covers older entries: lets reclaim drop segments.
      auto t = w.group(g)->term(first - 100);
      if (t) (void)w.mark_compacted(g, first - 100, *t);
    }
    std::optional<Position> reset;
    const uint64_t reset_index = first + n - 1 + 50;
    if (rng() % 32 == 0) {
      // A snapshot the log does not hold is installed: the whole log goes
      // (the entries just appended too) and restarts after reset_index.
      auto r = w.reset_group(g, reset_index, term);
      if (r) reset = *r;
    }
    Position wait = *pos;
    if (hs) wait = std::max(wait, *hs);
    if (reset) wait = std::max(wait, *reset);
    auto st = co_await w.wait_durable(wait);
    if (!st.ok()) co_return;
    ack(out_fd, fmt::format("E {} {} {} {}", g, first, first + n - 1, term));
    if (hs) ack(out_fd, fmt::format("H {} {} {}", g, term, first + n - 1));
    if (reset) ack(out_fd, fmt::format("S {} {} {}", g, reset_index, term));
  }
}

[[noreturn]] void child_main(const std::string& dir, uint64_t term, int out_fd) {
  runtime::Runtime rt({.cores = 1});
  rt.block_on(0, [&]() -> Task<void> {
    auto w = co_await Wal::open(dir, crash_options());
    if (!w) {
      ack(out_fd, "X " + w.error().to_string());
      std::_Exit(3);
    }
    ack(out_fd, "R");
    for (int i = 0; i < kWritersPerChild; ++i) {
      runtime::spawn(writer(**w, term, i, out_fd, std::mt19937_64(term * 100 + i)));
    }
    for (;;)
      (void)co_await runtime::sleep_for(std::chrono::seconds(1));
  });
  std::_Exit(0);
}

struct Acked {
  std::map<std::pair<uint64_t, uint64_t>, uint64_t> entries;  // (group, index) -> term
  std::map<uint64_t, std::pair<uint64_t, uint64_t>> hs;       // group -> (term, commit)
  std::map<uint64_t, uint64_t> reset;                         // group -> highest reset index
};

void parse_acks(const std::string& text, Acked& acked, int* lines, std::string* error) {
  size_t at = 0;
  while (at < text.size()) {
    size_t nl = text.find('\n', at);
    if (nl == std::string::npos) break;
    std::string line = text.substr(at, nl - at);
    at = nl + 1;
    ++*lines;
    uint64_t g, a, b, t;
    if (std::sscanf(line.c_str(), "E %lu %lu %lu %lu", &g, &a, &b, &t) == 4) {
      for (uint64_t i = a; i <= b; ++i)
        acked.entries[{g, i}] = t;
    } else if (std::sscanf(line.c_str(), "H %lu %lu %lu", &g, &t, &a) == 3) {
      acked.hs[g] = {t, a};
    } else if (std::sscanf(line.c_str(), "S %lu %lu %lu", &g, &a, &t) == 3) {
      acked.reset[g] = std::max(acked.reset[g], a);
    } else if (line.rfind("X ", 0) == 0) {
      *error = line;
    }
  }
}

// Runs one writer until it has acknowledged a few appends, kills it at a random moment.
void run_and_kill(const std::string& dir, uint64_t term, std::mt19937_64& rng, Acked& acked,
                  std::string* error) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::close(fds[0]);
    child_main(dir, term, fds[1]);
  }
  ::close(fds[1]);
  std::string buf;
  int lines = 0;
  const int kill_after = 2 + static_cast<int>(rng() % 60);
  char tmp[4096];
  while (lines < kill_after && error->empty()) {
    ssize_t n = ::read(fds[0], tmp, sizeof tmp);
    if (n <= 0) break;
    buf.append(tmp, static_cast<size_t>(n));
    size_t last_nl = buf.rfind('\n');
    if (last_nl == std::string::npos) continue;
    parse_acks(buf.substr(0, last_nl + 1), acked, &lines, error);
    buf.erase(0, last_nl + 1);
  }
  ::usleep(static_cast<useconds_t>(rng() % 3000));
  ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
  // Acknowledgements written before the kill still count.
  for (;;) {
    ssize_t n = ::read(fds[0], tmp, sizeof tmp);
    if (n <= 0) break;
    buf.append(tmp, static_cast<size_t>(n));
  }
  size_t last_nl = buf.rfind('\n');
  if (last_nl != std::string::npos) parse_acks(buf.substr(0, last_nl + 1), acked, &lines, error);
  ::close(fds[0]);
  if (WIFEXITED(status)) *error += fmt::format(" writer exited with {}", WEXITSTATUS(status));
  if (WIFSIGNALED(status) && WTERMSIG(status) != SIGKILL) {
    *error += fmt::format(" writer died of signal {}", WTERMSIG(status));
  }
}

void verify(const std::string& dir, const Acked& acked, int kill) {
  PosixSegmentSource src(dir);
  auto rec = recover(src);
  ASSERT_TRUE(rec.ok()) << "after kill " << kill << ": " << rec.error().to_string();
  std::map<uint64_t, std::string> files;
  for (const auto& [key, term] : acked.entries) {
    const auto [g, i] = key;
    auto it = rec->groups.find(g);
    ASSERT_NE(it, rec->groups.end()) << "group " << g << " lost after kill " << kill;
    const GroupLog& gl = it->second;
    if (i <= gl.compact_index()) continue;  // covered by a snapshot
    const EntryLoc* loc = gl.entry(i);
    ASSERT_NE(loc, nullptr) << "acknowledged entry " << g << "/" << i << " lost after kill " << kill
                            << " (log " << gl.first_index() << ".." << gl.last_index() << ")";
    ASSERT_EQ(loc->term, term) << "entry " << g << "/" << i;
    auto f = files.find(loc->seq);
    if (f == files.end()) {
      std::string bytes;
      ASSERT_TRUE(src.read_all(segment_file_name(loc->seq), kSegmentBytesMax, &bytes).ok());
      f = files.emplace(loc->seq, std::move(bytes)).first;
    }
    ASSERT_EQ(f->second.substr(loc->offset, loc->len), payload_of(g, i, term))
        << "entry " << g << "/" << i << " corrupted after kill " << kill;
  }
  // A durable reset is never undone (a later reset or compaction only raises
  // the start point: every reset index is above all entries written before).
  for (const auto& [g, index] : acked.reset) {
    ASSERT_GE(rec->groups.at(g).compact_index(), index)
        << "acknowledged reset of group " << g << " lost after kill " << kill;
  }
  for (const auto& [g, hs] : acked.hs) {
    const GroupLog& gl = rec->groups.at(g);
    ASSERT_GE(gl.hard_state().term, hs.first) << "hard state of group " << g << " went back";
    if (gl.hard_state().term == hs.first) ASSERT_GE(gl.hard_state().commit, hs.second);
  }
}

TEST(WalCrashTest, SigkillNeverLosesAnAcknowledgedEntry) {
  const char* env = std::getenv("NORI_WAL_CRASH_KILLS");
  const int kills = env ? std::atoi(env) : 20;
  // Per kill count: the default test and the soak may run at the same time.
  const std::string dir = fmt::format("{}/crash-{}", NORI_WAL_TEST_DIR, kills);
  fs::remove_all(dir);
  fs::create_directories(NORI_WAL_TEST_DIR);
  std::mt19937_64 rng(0xc0ffee);
  Acked acked;
  for (int k = 1; k <= kills; ++k) {
    std::string error;
    run_and_kill(dir, static_cast<uint64_t>(k), rng, acked, &error);
    ASSERT_TRUE(error.empty()) << "kill " << k << ": " << error;
    verify(dir, acked, k);
    if (::testing::Test::HasFatalFailure()) return;
  }
  EXPECT_GT(acked.entries.size(), 100u) << "the writers must make progress between kills";
  EXPECT_GT(acked.reset.size(), 0u) << "the writers must reset groups too";
}

}  // namespace
}  // namespace nori::wal
