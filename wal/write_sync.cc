#include "wal/write_sync.h"

namespace nori::wal {

bool write_sync_supported() {
  // One throwaway ring per process: the features word is only reported at
  // ring set-up. Without a ring (io_uring disabled) the WAL cannot run anyway.
  static const bool supported = [] {
    io_uring ring;
    io_uring_params p{};
    if (io_uring_queue_init_params(2, &ring, &p) < 0) return false;
    io_uring_queue_exit(&ring);
    return (p.features & IORING_FEAT_CQE_SKIP) != 0;
  }();
  return supported;
}

void WriteSync::start() {
  NORI_ASSERT(len_ > 0, "empty linked write");
  reactor_ = &runtime::Reactor::here();
  // Both SQEs in this round's submission, write first: see the header.
  reactor_->reserve_sqes(2);
  io_uring_sqe* w = reactor_->get_sqe();
  io_uring_prep_write(w, fd_, buf_, len_, offset_);
  w->flags |= IOSQE_IO_LINK | IOSQE_CQE_SKIP_SUCCESS;
  io_uring_sqe_set_data(w, static_cast<runtime::Completion*>(&write_part_));
  io_uring_sqe* s = reactor_->get_sqe();
  io_uring_prep_fsync(s, fd_, IORING_FSYNC_DATASYNC);
  io_uring_sqe_set_data(s, static_cast<runtime::Completion*>(&sync_part_));
  in_flight_ = true;
  reactor_->op_started();  // one CQE for the chain
}

void WriteSync::finish() {
  NORI_ASSERT(in_flight_ && !done_, "second completion for one linked write + sync");
  in_flight_ = false;
  done_ = true;
  reactor_->op_finished();
  Cancellable::unlink();
  if (!orphaned_) reactor_->schedule(waiter_);
}

// Only posted when the write failed or was short: the sync was skipped
// without a CQE of its own.
void WriteSync::on_write_cqe(runtime::Completion* c, int32_t res, uint32_t) {
  WriteSync* self = static_cast<Part*>(c)->self;
  NORI_ASSERT(res < 0 || uint32_t(res) < self->len_,
              "linked write posted a CQE for a full write ({} bytes)", res);
  self->result_.written = res;
  self->result_.sync_res = -ECANCELED;
  self->finish();
}

// The sync ran (or was cancelled after the write completed): the write
// wrote all len_ bytes, else the link would have skipped the sync.
void WriteSync::on_sync_cqe(runtime::Completion* c, int32_t res, uint32_t) {
  WriteSync* self = static_cast<Part*>(c)->self;
  self->result_.written = static_cast<int32_t>(self->len_);
  self->result_.sync_res = res;
  self->finish();
}

void WriteSync::cancel() {
  if (!in_flight_) return;
  // A write already handed to the device completes anyway; a sync not yet
  // started is cancelled (its CQE then says -ECANCELED).
  reactor_->cancel_op(&write_part_);
  reactor_->cancel_op(&sync_part_);
}

}  // namespace nori::wal
