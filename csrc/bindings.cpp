// clarifx._native: the one pybind11 module. It takes DLPack capsules (numpy, torch and CuPy all export
// them), views the caller's memory in place, checks every argument, and runs the CPU or CUDA kernel.
// No torch headers: the module must not link libtorch.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "clarifx/ops.h"

namespace py = pybind11;
using namespace clarifx;

namespace {

// ---- DLPack ABI, declared from the specification (dlpack.h v1.0) ----
struct DLDevice { int32_t device_type; int32_t device_id; };
struct DLDataType { uint8_t code; uint8_t bits; uint16_t lanes; };
struct DLTensor {
  void* data;
  DLDevice device;
  int32_t ndim;
  DLDataType dtype;
  int64_t* shape;
  int64_t* strides;  // in elements; NULL means compact row-major
  uint64_t byte_offset;
};
struct DLManagedTensor {
  DLTensor dl_tensor;
  void* manager_ctx;
  void (*deleter)(DLManagedTensor*);
};
struct DLPackVersion { uint32_t major; uint32_t minor; };
struct DLManagedTensorVersioned {
  DLPackVersion version;
  void* manager_ctx;
  void (*deleter)(DLManagedTensorVersioned*);
  uint64_t flags;
  DLTensor dl_tensor;
};
constexpr uint64_t kDLFlagReadOnly = 1;
constexpr int32_t kDLCPU = 1, kDLCUDA = 2, kDLCUDAHost = 3, kDLCUDAManaged = 13;
constexpr uint8_t kDLFloat = 2;

std::string device_name(const Tensor4& t) {
  return t.cuda ? "cuda:" + std::to_string(t.device) : std::string("cpu");
}

std::string shape_str(const Tensor4& t) {
  return "(" + std::to_string(t.shape[0]) + ", " + std::to_string(t.shape[1]) + ", " + std::to_string(t.shape[2]) +
         ", " + std::to_string(t.shape[3]) + ")";
}

// Borrow the tensor behind a DLPack capsule without consuming it: the capsule (and the producer's
// array, which the Python caller holds) keeps the memory alive for the duration of the call.
Tensor4 tensor_arg(const py::object& obj, const std::string& name) {
  PyObject* cap = obj.ptr();
  const DLTensor* t = nullptr;
  bool readonly = false;
  if (PyCapsule_IsValid(cap, "dltensor_versioned")) {
    auto* m = static_cast<DLManagedTensorVersioned*>(PyCapsule_GetPointer(cap, "dltensor_versioned"));
    expect(m->version.major == 1, name + ": unsupported DLPack major version " + std::to_string(m->version.major));
    t = &m->dl_tensor;
    readonly = (m->flags & kDLFlagReadOnly) != 0;
  } else if (PyCapsule_IsValid(cap, "dltensor")) {
    t = &static_cast<DLManagedTensor*>(PyCapsule_GetPointer(cap, "dltensor"))->dl_tensor;
  } else {
    fail(name + ": expected an unused DLPack capsule");
  }
  expect(t->ndim == 4, name + ": expected 4 dimensions, got " + std::to_string(t->ndim));
  expect(t->dtype.code == kDLFloat && t->dtype.lanes == 1 && (t->dtype.bits == 32 || t->dtype.bits == 16),
         name + ": dtype must be float32 or float16");

  Tensor4 v;
  v.dtype = t->dtype.bits == 16 ? DType::f16 : DType::f32;
  switch (t->device.device_type) {
    case kDLCPU: case kDLCUDAHost: v.cuda = false; break;
    case kDLCUDA: case kDLCUDAManaged: v.cuda = true; v.device = t->device.device_id; break;
    default: fail(name + ": unsupported device type " + std::to_string(t->device.device_type));
  }
  v.readonly = readonly;
  int64_t contiguous = 1;
  for (int d = 3; d >= 0; --d) {
    v.shape[d] = t->shape[d];
    v.stride[d] = t->strides ? t->strides[d] : contiguous;
    contiguous *= t->shape[d];
  }
  v.data = static_cast<char*>(t->data) + t->byte_offset;
  return v;
}

Tensor4 optional_tensor_arg(const py::object& obj, const std::string& name) {
  return obj.is_none() ? Tensor4{} : tensor_arg(obj, name);
}

// Element range [lo, hi] that a view can touch, in bytes.
void byte_span(const Tensor4& t, const char*& lo, const char*& hi) {
  const int64_t item = t.dtype == DType::f16 ? 2 : 4;
  int64_t first = 0, last = 0;
  for (int d = 0; d < 4; ++d) {
    const int64_t reach = (t.shape[d] - 1) * t.stride[d] * item;
    (reach < 0 ? first : last) += reach;
  }
  lo = static_cast<const char*>(t.data) + first;
  hi = static_cast<const char*>(t.data) + last + item - 1;
}

bool overlaps(const Tensor4& a, const Tensor4& b) {
  if (!a.defined() || !b.defined() || a.numel() == 0 || b.numel() == 0 || a.cuda != b.cuda) return false;
  const char *alo, *ahi, *blo, *bhi;
  byte_span(a, alo, ahi);
  byte_span(b, blo, bhi);
  return alo <= bhi && blo <= ahi;
}

// An output must be writable and must not write one element twice (no broadcast or overlapping strides).
void expect_output(const Tensor4& t, const std::string& name) {
  expect(!t.readonly, name + " is read-only");
  if (t.numel() == 0) return;  // writes nothing; numpy gives empty arrays all-zero strides
  int order[4] = {0, 1, 2, 3};
  std::sort(order, order + 4, [&](int a, int b) { return std::llabs(t.stride[a]) < std::llabs(t.stride[b]); });
  int64_t reach = 1;
  for (int i = 0; i < 4; ++i) {
    const int d = order[i];
    if (t.shape[d] <= 1) continue;
    expect(std::llabs(t.stride[d]) >= reach, name + " has overlapping strides; pass a writable array that owns its memory");
    reach = std::llabs(t.stride[d]) * t.shape[d];
  }
}

void expect_shape(const Tensor4& t, const std::string& name, int64_t n, int64_t c, int64_t h, int64_t w) {
  expect(t.shape[0] == n && t.shape[1] == c && t.shape[2] == h && t.shape[3] == w,
         name + ": expected shape (" + std::to_string(n) + ", " + std::to_string(c) + ", " + std::to_string(h) +
             ", " + std::to_string(w) + ") in NCHW order, got " + shape_str(t));
}

void expect_same_device(const Tensor4& ref, const std::string& ref_name, const Tensor4& t, const std::string& name) {
  if (!t.defined()) return;
  expect(ref.cuda == t.cuda && (!ref.cuda || ref.device == t.device),
         name + " is on " + device_name(t) + " but " + ref_name + " is on " + device_name(ref));
}

void expect_dtype(const Tensor4& ref, const std::string& ref_name, const Tensor4& t, const std::string& name) {
  if (!t.defined()) return;
  expect(ref.dtype == t.dtype, name + " must have the same dtype as " + ref_name);
}

void expect_no_overlap(const Tensor4& out, const std::string& out_name, const Tensor4& in, const std::string& in_name) {
  expect(!overlaps(out, in), out_name + " overlaps " + in_name + "; pass a separate output array");
}

void expect_cuda_built(const Tensor4& t, const std::string& name) {
#ifndef CLARIFX_WITH_CUDA
  expect(!t.cuda, name + " is on " + device_name(t) +
                      " but this clarifx was built without CUDA (install with nvcc present, CLARIFX_CUDA=ON)");
#else
  (void)t;
  (void)name;
#endif
}

template <typename E>
E parse_enum(const std::string& value, const std::string& name,
             std::initializer_list<std::pair<const char*, E>> options) {
  std::string valid;
  for (const auto& o : options) {
    if (value == o.first) return o.second;
    valid += (valid.empty() ? "" : ", ") + std::string(o.first);
  }
  fail(name + ": unknown value '" + value + "' (expected one of " + valid + ")");
}

Filter parse_filter(const std::string& v) {
  return parse_enum<Filter>(v, "filter", {{"box", Filter::box}, {"bilinear", Filter::bilinear},
                                          {"bicubic", Filter::bicubic}, {"lanczos3", Filter::lanczos3}});
}

// torch's AVX kernels can return with the calling thread's upper vector registers dirty; baseline SSE
// code (ours) then carries a false dependency on every vector instruction, which measured twice as slow
// right after a torch op. vzeroupper clears that state; it exists only where AVX does.
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx"))) void zero_upper_avx() { __builtin_ia32_vzeroupper(); }
void clear_upper_vector_state() {
  static const bool has_avx = __builtin_cpu_supports("avx");
  if (has_avx) zero_upper_avx();
}
#else
void clear_upper_vector_state() {}
#endif

[[maybe_unused]] void* as_stream(uintptr_t stream) { return reinterpret_cast<void*>(stream); }

// ---- ops ----

void warp(py::object image, py::object flow, py::object out, py::object mask, const std::string& interp,
          const std::string& border, bool check_finite, uintptr_t stream) {
  WarpArgs a;
  a.image = tensor_arg(image, "image");
  a.flow = tensor_arg(flow, "flow");
  a.out = tensor_arg(out, "out");
  a.mask = optional_tensor_arg(mask, "mask");
  a.interp = parse_enum<Interp>(interp, "interp", {{"bilinear", Interp::bilinear}, {"bicubic", Interp::bicubic}});
  a.border = parse_enum<Border>(border, "border",
                                {{"clamp", Border::clamp}, {"zero", Border::zero}, {"reflect", Border::reflect}});
  const auto& s = a.image.shape;
  expect_shape(a.flow, "flow", s[0], 2, s[2], s[3]);
  expect_shape(a.out, "out", s[0], s[1], s[2], s[3]);
  if (a.mask.defined()) expect_shape(a.mask, "mask", s[0], 1, s[2], s[3]);
  for (auto [t, n] : {std::pair{a.flow, "flow"}, {a.out, "out"}, {a.mask, "mask"}}) expect_same_device(a.image, "image", t, n);
  expect_dtype(a.image, "image", a.out, "out");
  expect_dtype(a.image, "image", a.mask, "mask");
  expect_cuda_built(a.image, "image");
  expect_output(a.out, "out");
  expect_no_overlap(a.out, "out", a.image, "image");
  expect_no_overlap(a.out, "out", a.flow, "flow");
  if (a.mask.defined()) {
    expect_output(a.mask, "mask");
    expect_no_overlap(a.mask, "mask", a.out, "out");
    expect_no_overlap(a.mask, "mask", a.image, "image");
    expect_no_overlap(a.mask, "mask", a.flow, "flow");
  }
  if (a.out.numel() == 0) return;
  bool finite = true;
  {
    py::gil_scoped_release nogil;
    clear_upper_vector_state();
#ifdef CLARIFX_WITH_CUDA
    if (a.image.cuda) finite = cuda::warp(a, as_stream(stream), check_finite);
    else
#endif
      finite = cpu::warp(a);
  }
  (void)stream;
  expect(!check_finite || finite, "flow contains NaN or infinite values");
}

void occlusion(py::object forward, py::object backward, py::object out, float alpha1, float alpha2,
               bool check_finite, uintptr_t stream) {
  OcclusionArgs a;
  a.forward = tensor_arg(forward, "forward");
  a.backward = tensor_arg(backward, "backward");
  a.out = tensor_arg(out, "out");
  a.alpha1 = alpha1;
  a.alpha2 = alpha2;
  const auto& s = a.forward.shape;
  expect(s[1] == 2, "forward: expected 2 channels (dx, dy), got " + shape_str(a.forward));
  expect_shape(a.backward, "backward", s[0], 2, s[2], s[3]);
  expect_shape(a.out, "out", s[0], 1, s[2], s[3]);
  expect_same_device(a.forward, "forward", a.backward, "backward");
  expect_same_device(a.forward, "forward", a.out, "out");
  expect_dtype(a.forward, "forward", a.backward, "backward");
  expect_dtype(a.forward, "forward", a.out, "out");
  expect_cuda_built(a.forward, "forward");
  expect_output(a.out, "out");
  expect_no_overlap(a.out, "out", a.forward, "forward");
  expect_no_overlap(a.out, "out", a.backward, "backward");
  if (a.out.numel() == 0) return;
  bool finite = true;
  {
    py::gil_scoped_release nogil;
    clear_upper_vector_state();
#ifdef CLARIFX_WITH_CUDA
    if (a.forward.cuda) finite = cuda::occlusion(a, as_stream(stream), check_finite);
    else
#endif
      finite = cpu::occlusion(a);
  }
  (void)stream;
  expect(!check_finite || finite, "forward or backward flow contains NaN or infinite values");
}

void fused_upsample(py::object features, py::object base, py::object out, int scale, const std::string& filter,
                    py::object clamp_lo, py::object clamp_hi, uintptr_t stream) {
  FusedUpsampleArgs a;
  a.features = tensor_arg(features, "features");
  a.base = tensor_arg(base, "base");
  a.out = tensor_arg(out, "out");
  expect(scale >= 2 && scale <= 4, "scale must be 2, 3 or 4, got " + std::to_string(scale));
  a.scale = scale;
  a.filter = parse_filter(filter);
  expect(clamp_lo.is_none() == clamp_hi.is_none(), "clamp: give both bounds or neither");
  a.clamp = !clamp_lo.is_none();
  if (a.clamp) {
    a.lo = clamp_lo.cast<float>();
    a.hi = clamp_hi.cast<float>();
    expect(a.lo <= a.hi, "clamp: lower bound is above the upper bound");
  }
  const auto& b = a.base.shape;
  expect_shape(a.features, "features", b[0], b[1] * scale * scale, b[2], b[3]);
  expect_shape(a.out, "out", b[0], b[1], b[2] * scale, b[3] * scale);
  expect_same_device(a.base, "base", a.features, "features");
  expect_same_device(a.base, "base", a.out, "out");
  expect_dtype(a.base, "base", a.features, "features");
  expect_dtype(a.base, "base", a.out, "out");
  expect_cuda_built(a.base, "base");
  expect_output(a.out, "out");
  expect_no_overlap(a.out, "out", a.features, "features");
  expect_no_overlap(a.out, "out", a.base, "base");
  if (a.out.numel() == 0) return;
  py::gil_scoped_release nogil;
  clear_upper_vector_state();
#ifdef CLARIFX_WITH_CUDA
  if (a.base.cuda) return cuda::fused_upsample(a, as_stream(stream));
#endif
  (void)stream;
  cpu::fused_upsample(a);
}

void resample(py::object in, py::object out, const std::string& filter, uintptr_t stream) {
  ResampleArgs a;
  a.in = tensor_arg(in, "image");
  a.out = tensor_arg(out, "out");
  a.filter = parse_filter(filter);
  const auto& s = a.in.shape;
  expect(a.out.shape[0] == s[0] && a.out.shape[1] == s[1],
         "out: expected the same batch and channel count as image " + shape_str(a.in) + ", got " + shape_str(a.out));
  expect(a.out.numel() == 0 || (s[2] > 0 && s[3] > 0), "image has no pixels to resample from");
  expect_same_device(a.in, "image", a.out, "out");
  expect_dtype(a.in, "image", a.out, "out");
  expect_cuda_built(a.in, "image");
  expect_output(a.out, "out");
  expect_no_overlap(a.out, "out", a.in, "image");
  if (a.out.numel() == 0) return;
  py::gil_scoped_release nogil;
  clear_upper_vector_state();
#ifdef CLARIFX_WITH_CUDA
  if (a.in.cuda) return cuda::resample(a, as_stream(stream));
#endif
  (void)stream;
  cpu::resample(a);
}

GrainSpec grain_spec(int channels, int lag, std::vector<float> ar_coeffs, std::vector<float> ar_luma,
                     std::vector<float> lut) {
  GrainSpec g;
  expect(channels >= 1 && channels <= 4, "channels must be 1..4, got " + std::to_string(channels));
  expect(lag >= 0 && lag <= kGrainMaxLag, "ar_lag must be 0..3, got " + std::to_string(lag));
  const size_t taps = size_t(2 * lag * (lag + 1));
  expect(ar_coeffs.size() == size_t(channels) * taps,
         "ar_coeffs: expected " + std::to_string(channels) + " x " + std::to_string(taps) + " values for lag " +
             std::to_string(lag) + ", got " + std::to_string(ar_coeffs.size()));
  expect(ar_luma.size() == size_t(channels), "ar_luma: expected one value per channel");
  expect(lut.size() == size_t(channels) * kGrainLut, "strength: expected one curve per channel");
  for (float v : ar_coeffs) expect(std::isfinite(v), "ar_coeffs must be finite");
  for (float v : ar_luma) expect(std::isfinite(v), "ar_luma must be finite");
  for (float v : lut) expect(std::isfinite(v), "strength must be finite");
  g.channels = channels;
  g.lag = lag;
  g.ar_coeffs = std::move(ar_coeffs);
  g.ar_luma = std::move(ar_luma);
  g.lut = std::move(lut);
  return g;
}

void grain(py::object image, py::object out, int channels, int lag, std::vector<float> ar_coeffs,
           std::vector<float> ar_luma, std::vector<float> lut, uint64_t seed, int64_t frame, py::object clip_lo,
           py::object clip_hi, uintptr_t stream) {
  const GrainSpec spec = grain_spec(channels, lag, std::move(ar_coeffs), std::move(ar_luma), std::move(lut));
  GrainArgs a;
  a.image = tensor_arg(image, "image");
  a.out = tensor_arg(out, "out");
  a.spec = &spec;
  a.seed = seed;
  a.frame = frame;
  expect(clip_lo.is_none() == clip_hi.is_none(), "clip: give both bounds or neither");
  a.clip = !clip_lo.is_none();
  if (a.clip) {
    a.lo = clip_lo.cast<float>();
    a.hi = clip_hi.cast<float>();
    expect(a.lo <= a.hi, "clip: lower bound is above the upper bound");
  }
  const auto& s = a.image.shape;
  expect(s[1] >= channels, "image has " + std::to_string(s[1]) + " channels but the grain has " +
                               std::to_string(channels));
  expect_shape(a.out, "out", s[0], s[1], s[2], s[3]);
  expect_same_device(a.image, "image", a.out, "out");
  expect_dtype(a.image, "image", a.out, "out");
  expect_cuda_built(a.image, "image");
  expect_output(a.out, "out");
  // Writing in place is fine (each pixel reads only itself); a partial overlap is not.
  const bool same = a.out.data == a.image.data && std::equal(a.out.stride, a.out.stride + 4, a.image.stride);
  expect(same || !overlaps(a.out, a.image), "out partially overlaps image; pass image itself or a separate array");
  if (a.out.numel() == 0) return;
  py::gil_scoped_release nogil;
  clear_upper_vector_state();
#ifdef CLARIFX_WITH_CUDA
  if (a.image.cuda) return cuda::grain(a, as_stream(stream));
#endif
  (void)stream;
  cpu::grain(a);
}

py::array_t<float> template_array(int channels, int lag, std::vector<float> ar_coeffs, std::vector<float> ar_luma,
                                  uint64_t seed, int64_t frame) {
  std::vector<float> lut(size_t(std::max(channels, 0)) * kGrainLut, 0.f);
  const GrainSpec spec = grain_spec(channels, lag, std::move(ar_coeffs), std::move(ar_luma), std::move(lut));
  const std::vector<float> t = clarifx::grain_template(spec, seed, frame);
  py::array_t<float> res({channels, kGrainSize, kGrainSize});
  std::memcpy(res.mutable_data(), t.data(), t.size() * sizeof(float));
  return res;
}

py::array_t<int32_t> offsets_array(uint64_t seed, int64_t frame, int64_t blocks_y, int64_t blocks_x) {
  expect(blocks_y >= 0 && blocks_x >= 0, "block counts must be non-negative");
  const std::vector<int32_t> o = clarifx::grain_offsets(seed, frame, blocks_y, blocks_x);
  py::array_t<int32_t> res({blocks_y, blocks_x, int64_t(2)});
  std::memcpy(res.mutable_data(), o.data(), o.size() * sizeof(int32_t));
  return res;
}

}  // namespace

PYBIND11_MODULE(_native, m) {
  m.doc() = "clarifx native kernels (CPU always; CUDA when built with nvcc). Use clarifx.kernels instead.";
#ifdef CLARIFX_WITH_CUDA
  m.attr("built_with_cuda") = true;
  m.def("cuda_available", &cuda::available);
#else
  m.attr("built_with_cuda") = false;
  m.def("cuda_available", [] { return false; });
#endif
  m.attr("grain_lut_size") = kGrainLut;
  m.attr("grain_template_size") = kGrainSize;
  m.attr("grain_block") = kGrainBlock;
  m.def("warp", &warp);
  m.def("occlusion", &occlusion);
  m.def("fused_upsample", &fused_upsample);
  m.def("resample", &resample);
  m.def("grain", &grain);
  m.def("grain_template", &template_array);
  m.def("grain_offsets", &offsets_array);
}
