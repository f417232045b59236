// CUDA helpers shared by every .cu file: error checks, device scoping, stream-ordered scratch memory.
// Nothing here synchronises the device; scratch is allocated and freed on the caller's stream.
#pragma once

#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "clarifx/tensor.h"

namespace clarifx::cuda {

inline void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string("CUDA error in ") + what + ": " + cudaGetErrorString(e));
}

// Launch errors (bad configuration, no kernel image for this GPU) surface here, without waiting.
inline void check_launch(const char* kernel) { check(cudaGetLastError(), kernel); }

// Makes `device` current for the scope and restores the caller's device after.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    check(cudaGetDevice(&previous_), "cudaGetDevice");
    if (previous_ != device) check(cudaSetDevice(device), "cudaSetDevice");
  }
  ~DeviceGuard() { cudaSetDevice(previous_); }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = 0;
};

// The current device's default memory pool (what cudaMallocAsync draws from) returns freed memory to
// the driver at every synchronisation unless told to keep some; per-frame scratch would then be
// mapped afresh each call. Keep up to 1 GiB cached, once per device; a failure only costs speed.
inline void keep_pool_memory() {
  static std::atomic<uint64_t> done{0};  // one bit per device index below 64
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess || device >= 64 || (done.load() >> device & 1)) return;
  cudaMemPool_t pool;
  uint64_t keep = uint64_t(1) << 30;
  if (cudaDeviceGetDefaultMemPool(&pool, device) != cudaSuccess ||
      cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep) != cudaSuccess)
    cudaGetLastError();  // leave no error behind for the next check to report as its own
  done.fetch_or(uint64_t(1) << device);
}

// Scratch device memory ordered on a stream: freed on the same stream, so it lives exactly as long
// as the kernels queued before the free need it.
template <typename T>
class StreamBuffer {
 public:
  StreamBuffer(size_t count, cudaStream_t stream) : stream_(stream) {
    keep_pool_memory();
    check(cudaMallocAsync(reinterpret_cast<void**>(&ptr_), count * sizeof(T) + 1, stream), "cudaMallocAsync");
  }
  // Copies a host vector in. Pageable sources are staged by the driver before this returns,
  // so `host` may go away right after (no wait on the device).
  StreamBuffer(const std::vector<T>& host, cudaStream_t stream) : StreamBuffer(host.size(), stream) {
    if (!host.empty())
      check(cudaMemcpyAsync(ptr_, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice, stream_),
            "cudaMemcpyAsync");
  }
  ~StreamBuffer() { cudaFreeAsync(ptr_, stream_); }
  StreamBuffer(const StreamBuffer&) = delete;
  StreamBuffer& operator=(const StreamBuffer&) = delete;
  T* get() const { return ptr_; }

 private:
  T* ptr_ = nullptr;
  cudaStream_t stream_;
};

inline cudaStream_t as_cuda(void* stream) { return static_cast<cudaStream_t>(stream); }

inline unsigned blocks_for(int64_t work, int threads) {
  return static_cast<unsigned>((work + threads - 1) / threads);
}

// A device flag that kernels raise on non-finite input; read() waits on the stream alone.
class Flag {
 public:
  explicit Flag(cudaStream_t stream) : buf_(1, stream), stream_(stream) {
    check(cudaMemsetAsync(buf_.get(), 0, sizeof(int), stream), "cudaMemsetAsync");
  }
  int* get() const { return buf_.get(); }
  bool read() const {
    int host = 0;
    check(cudaMemcpyAsync(&host, buf_.get(), sizeof(int), cudaMemcpyDeviceToHost, stream_), "cudaMemcpyAsync");
    check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
    return host != 0;
  }

 private:
  StreamBuffer<int> buf_;
  cudaStream_t stream_;
};

}  // namespace clarifx::cuda
