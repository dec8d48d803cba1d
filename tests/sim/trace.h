// Event trace of a simulation run: one JSON object per line, each with the
// simulated real time `t_ns` and an `ev` name (send, deliver, drop, crash,
// restart, pause, resume, partition, heal, drift, role, lease_read, call,
// return, violation...). Written only when a path was given; the hot path
// checks enabled() before building anything.
#pragma once

#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "tests/sim/scheduler.h"

namespace nori::sim {

class TraceWriter {
 public:
  explicit TraceWriter(const std::string& path) {
    if (!path.empty()) out_ = std::make_unique<std::ofstream>(path, std::ios::trunc);
  }
  bool enabled() const { return out_ != nullptr; }
  bool ok() const { return !out_ || out_->good(); }

  void write(SimTime t, const char* ev, nlohmann::json fields) {
    if (!out_) return;
    fields["t_ns"] = t;
    fields["ev"] = ev;
    *out_ << fields.dump() << '\n';
  }

 private:
  std::unique_ptr<std::ofstream> out_;
};

}  // namespace nori::sim
