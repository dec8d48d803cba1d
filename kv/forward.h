// ForwardLink: one pipelined RESP connection from a core of this norikv node
// to the client port of a peer norikv node, used to forward a write or a
// linearizable read to the shard's leader.
//
// What it costs: one extra loopback/LAN round trip plus encoding and parsing
// on both sides; the leader then does the work it would do for its own
// client. Requests from every connection of this core to that peer share the
// link (FIFO: RESP replies come back in request order), so forwarding adds
// no connection per client.
//
// Failure: a request that could not be sent (connect refused) fails kIo
// (certainly not delivered); once a request may have been written, a broken
// connection, EOF, or no reply within reply_timeout_ms fails it and every
// other request in flight on the link with kOutcomeUnknown, and the link
// reconnects on the next call. The caller retries with the same session
// sequence number, so a forwarded write applies at most once (store.h).
// Calls made while the link connects wait for that connect (a pipeline's
// concurrent first forwards used to fail at once and each cost a retry).
//
// Bounds: in-flight requests per link, those waiting for the connect
// included (inflight_max; beyond: kBusy), and the reply size (ParserLimits).
//
// Threading: a link belongs to one core; call() only on that core.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <vector>

#include "kv/resp.h"
#include "runtime/base/clock.h"
#include "runtime/base/result.h"
#include "runtime/oneshot.h"
#include "runtime/reactor.h"
#include "runtime/task.h"

namespace nori::kv {

struct ForwardOptions {
  uint32_t connect_timeout_ms = 500;
  uint32_t reply_timeout_ms = 3000;
  size_t inflight_max = 4096;
  ParserLimits limits;
};

class ForwardLink {
 public:
  ForwardLink(std::string host, uint16_t port, ForwardOptions opt)
      : host_(std::move(host)), port_(port), opt_(opt) {}
  ~ForwardLink();

  // Sends one RESP-encoded request; resolves to the raw RESP reply bytes.
  runtime::Task<base::Result<std::string>> call(std::string request);

  uint64_t requests() const { return requests_; }

 private:
  struct Pending {
    runtime::OneShot<base::Result<std::string>>* slot;
    base::TimePoint sent;
  };
  runtime::Task<base::Status> connect();
  runtime::Task<void> writer(uint64_t gen);
  runtime::Task<void> reader(uint64_t gen);
  runtime::Task<void> watchdog(uint64_t gen);
  void fail_all(const std::string& why);

  std::string host_;
  uint16_t port_;
  ForwardOptions opt_;
  int fd_ = -1;
  uint64_t gen_ = 0;  // bumped on every (re)connect and failure: old tasks stop
  bool connecting_ = false;
  bool writing_ = false;
  std::string out_;
  std::deque<Pending> pending_;
  // Calls waiting for the connect another call started (counted against
  // inflight_max with pending_).
  std::vector<runtime::OneShot<base::Status>*> connect_waiters_;
  uint64_t requests_ = 0;
};

}  // namespace nori::kv
