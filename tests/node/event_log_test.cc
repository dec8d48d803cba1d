// EventLog (raft/node/event_log.h): events as JSON lines written by a thread
// of their own. Each test is named after the failure it proves handled.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <thread>

#include "raft/node/event_log.h"
#include "tests/node/node_test_util.h"

namespace nori::raft {
namespace {

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);)
    out.push_back(l);
  return out;
}

TEST(EventLog, EveryLineIsWrittenInOrderByStop) {
  const std::string dir = testing::fresh_dir("event-log-order");
  const std::string path = dir + "/events.jsonl";
  auto log = EventLog::open(path, 64);
  ASSERT_TRUE(log.ok()) << log.error().to_string();
  // Appends in waves no larger than the bound, waiting for room in between:
  // none may be lost or reordered.
  size_t appended = 0;
  for (int k = 0; k < 2000; ++k) {
    std::string line = fmt::format("{{\"n\":{}}}", k);
    while (!(*log)->append(line))
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    ++appended;
  }
  const uint64_t dropped = (*log)->dropped();
  (*log)->stop();
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  auto lines = lines_of(ss.str());
  std::vector<std::string> data;
  for (const auto& l : lines) {
    if (l.find("EventsDropped") == std::string::npos) data.push_back(l);
  }
  ASSERT_EQ(data.size(), appended);
  for (size_t k = 0; k < data.size(); ++k)
    ASSERT_EQ(data[k], fmt::format("{{\"n\":{}}}", k));
  // Refused appends were retried, but each refusal still counts as a drop
  // and is reported in the file.
  size_t reported = 0;
  for (const auto& l : lines) {
    if (l.find("EventsDropped") != std::string::npos) {
      reported += std::stoul(l.substr(l.find("\"count\":") + 8));
    }
  }
  EXPECT_EQ(reported, dropped);
  std::filesystem::remove_all(dir);
}

// The file is a pipe nobody reads: the writer thread blocks in its write,
// appends never do; the queue fills, further lines are dropped and counted,
// and once the reader drains the pipe the file says how many are missing.
TEST(EventLog, StalledFileDropsLinesInsteadOfBlockingAndSaysHowMany) {
  const std::string dir = testing::fresh_dir("event-log-stall");
  const std::string path = dir + "/events.fifo";
  ASSERT_EQ(::mkfifo(path.c_str(), 0600), 0);
  // A reader end first (non-blocking open), so that opening for append does not wait.
  int rfd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  ASSERT_GE(rfd, 0);
  auto log = EventLog::open(path, 16);
  ASSERT_TRUE(log.ok()) << log.error().to_string();
  const std::string pad(1000, 'x');
  size_t accepted = 0;
  for (int k = 0; k < 400; ++k) {
    if ((*log)->append(fmt::format("{{\"n\":{},\"pad\":\"{}\"}}", k, pad))) ++accepted;
  }
  const uint64_t dropped = (*log)->dropped();
  EXPECT_GT(dropped, 0u) << "a pipe buffer of 64 KiB cannot hold 400 KB: lines must drop";
  EXPECT_EQ(accepted + dropped, 400u);
  // Drain in the background while stop() writes the rest and closes.
  ASSERT_EQ(::fcntl(rfd, F_SETFL, 0), 0);  // blocking reads from here
  std::string text;
  std::thread reader([&] {
    char buf[65536];
    while (true) {
      ssize_t n = ::read(rfd, buf, sizeof buf);
      if (n <= 0) break;
      text.append(buf, static_cast<size_t>(n));
    }
  });
  (*log)->stop();
  reader.join();
  ::close(rfd);
  size_t data = 0, reported = 0;
  for (const auto& l : lines_of(text)) {
    if (l.find("EventsDropped") != std::string::npos) {
      reported += std::stoul(l.substr(l.find("\"count\":") + 8));
    } else {
      ++data;
    }
  }
  EXPECT_EQ(data, accepted);
  EXPECT_EQ(reported, dropped);
  std::filesystem::remove_all(dir);
}

TEST(EventLog, UnopenablePathIsAnIoError) {
  auto log = EventLog::open("/nonexistent-dir-for-nori/events.jsonl");
  ASSERT_FALSE(log.ok());
  EXPECT_EQ(log.error().kind(), base::ErrorKind::kIo);
}

}  // namespace
}  // namespace nori::raft
