#include "wal/sim_disk.h"

#include <cstring>

namespace nori::wal {

using base::ErrorKind;

SimDisk::File* SimDisk::find(const std::string& name) {
  auto it = files_.find(name);
  return it == files_.end() ? nullptr : &it->second;
}

uint64_t SimDisk::used_bytes() const {
  uint64_t n = 0;
  for (const auto& [name, f] : files_)
    n += f.bytes.size();
  return n;
}

base::Status SimDisk::create(const std::string& name, uint64_t size) {
  if (files_.count(name)) return base::err(ErrorKind::kInvalidArgument, "{} exists", name);
  if (used_bytes() + size > space_bytes_) {
    return base::err(ErrorKind::kNoSpace, "creating {} ({} bytes): no space left on device", name,
                     size);
  }
  File& f = files_[name];
  f.bytes.assign(size, '\0');
  f.durable = f.bytes;
  return {};
}

base::Status SimDisk::write(const std::string& name, uint64_t offset, const char* data, size_t n) {
  File* f = find(name);
  if (f == nullptr) return base::err(ErrorKind::kNotFound, "{} not found", name);
  if (fail_write_in_ >= 0 && fail_write_in_-- == 0) {
    return base::err(ErrorKind::kIo, "write to {} at {}: injected EIO", name, offset);
  }
  if (offset + n > f->bytes.size()) {
    const uint64_t grow = offset + n - f->bytes.size();
    if (used_bytes() + grow > space_bytes_) {
      return base::err(ErrorKind::kNoSpace, "write to {}: no space left on device", name);
    }
    f->bytes.resize(offset + n, '\0');
    f->durable.resize(offset + n, '\0');
  }
  std::memcpy(f->bytes.data() + offset, data, n);
  for (uint64_t b = offset / block_bytes_; b * block_bytes_ < offset + n; ++b)
    f->dirty.insert(b);
  return {};
}

base::Status SimDisk::sync_range(const std::string& name, uint64_t offset, size_t n) {
  File* f = find(name);
  if (f == nullptr) return base::err(ErrorKind::kNotFound, "{} not found", name);
  if (fail_sync_in_ >= 0 && fail_sync_in_-- == 0) {
    return base::err(ErrorKind::kIo, "sync of {}: injected EIO", name);
  }
  for (uint64_t b = offset / block_bytes_; b * block_bytes_ < offset + n; ++b) {
    if (!f->dirty.erase(b)) continue;
    const uint64_t at = b * block_bytes_;
    const uint64_t len = std::min<uint64_t>(block_bytes_, f->bytes.size() - at);
    std::memcpy(f->durable.data() + at, f->bytes.data() + at, len);
  }
  return {};
}

base::Status SimDisk::sync(const std::string& name) {
  File* f = find(name);
  if (f == nullptr) return base::err(ErrorKind::kNotFound, "{} not found", name);
  return sync_range(name, 0, f->bytes.size());
}

base::Status SimDisk::rename(const std::string& from, const std::string& to) {
  auto it = files_.find(from);
  if (it == files_.end()) return base::err(ErrorKind::kNotFound, "{} not found", from);
  File f = std::move(it->second);
  files_.erase(it);
  files_[to] = std::move(f);
  return {};
}

base::Status SimDisk::unlink(const std::string& name) {
  if (files_.erase(name) == 0) return base::err(ErrorKind::kNotFound, "{} not found", name);
  return {};
}

std::vector<std::string> SimDisk::list() const {
  std::vector<std::string> out;
  for (const auto& [name, f] : files_)
    out.push_back(name);
  return out;
}

std::string SimDisk::read(const std::string& name) const {
  auto it = files_.find(name);
  return it == files_.end() ? std::string() : it->second.bytes;
}

std::string& SimDisk::mutable_bytes(const std::string& name) {
  File* f = find(name);
  NORI_ASSERT(f != nullptr, "no file {}", name);
  // Damage applies to what survives too: make the file fully "durable" first.
  f->durable = f->bytes;
  f->dirty.clear();
  return f->bytes;
}

void SimDisk::crash(std::mt19937_64& rng) {
  crash_with([&](const std::string&, uint64_t) { return rng() % 2 == 0; });
}

void SimDisk::crash_with(const std::function<bool(const std::string&, uint64_t)>& keep) {
  for (auto& [name, f] : files_) {
    for (uint64_t b : f.dirty) {
      if (keep(name, b)) {
        const uint64_t at = b * block_bytes_;
        const uint64_t len = std::min<uint64_t>(block_bytes_, f.bytes.size() - at);
        std::memcpy(f.durable.data() + at, f.bytes.data() + at, len);
      }
    }
    f.dirty.clear();
    f.bytes = f.durable;
  }
}

uint64_t SimDisk::dirty_blocks() const {
  uint64_t n = 0;
  for (const auto& [name, f] : files_)
    n += f.dirty.size();
  return n;
}

base::Status SimSegmentSource::read_all(const std::string& name, uint64_t bytes_max,
                                        std::string* out) {
  if (!disk_.exists(name)) return base::err(ErrorKind::kNotFound, "{} not found", name);
  *out = disk_.read(name);
  if (out->size() > bytes_max) {
    return base::err(ErrorKind::kCorruption, "{} is {} bytes, more than {}", name, out->size(),
                     bytes_max);
  }
  return {};
}

}  // namespace nori::wal
