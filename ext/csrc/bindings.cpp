// Python bindings of nerfpipe._ext; the kernels live in one <topic>.cpp (CPU) and one cuda/<topic>.cu (CUDA)
// per topic.
#include <torch/extension.h>

#include <string>
#include <utility>
#include <vector>

#include "nerfpipe_ext.h"

namespace {
bool has_cuda() {
#ifdef WITH_CUDA
  return true;
#else
  return false;
#endif
}
// The ops whose CUDA kernels are compiled in, by their Python names. Each entry names its launcher of
// nerfpipe_ext.h (NAME_cuda), so the list cannot hold an op without one; a launcher missing from the link
// (as when two objects of one topic overwrote each other) fails the import with an undefined symbol.
std::vector<std::string> cuda_ops() {
  std::vector<std::string> names;
#ifdef WITH_CUDA
#define NERFPIPE_CUDA_OP(NAME) {#NAME, reinterpret_cast<const void*>(&nerfpipe::NAME##_cuda)}
  const std::pair<const char*, const void*> launchers[] = {
      NERFPIPE_CUDA_OP(uniform_fill),
      NERFPIPE_CUDA_OP(ray_indices_fill),
      NERFPIPE_CUDA_OP(stratified_endpoints),
      NERFPIPE_CUDA_OP(sample_pdf),
      NERFPIPE_CUDA_OP(positional_encoding_forward),
      NERFPIPE_CUDA_OP(positional_encoding_backward),
      NERFPIPE_CUDA_OP(integrated_pos_enc_forward),
      NERFPIPE_CUDA_OP(integrated_pos_enc_backward),
      NERFPIPE_CUDA_OP(occ_march),
      NERFPIPE_CUDA_OP(packed_weights_forward),
      NERFPIPE_CUDA_OP(packed_weights_backward),
      NERFPIPE_CUDA_OP(packed_composite_forward),
      NERFPIPE_CUDA_OP(packed_composite_backward),
      NERFPIPE_CUDA_OP(occ_grid_update),
  };
#undef NERFPIPE_CUDA_OP
  for (const auto& launcher : launchers) names.emplace_back(launcher.first);
#endif
  return names;
}
// The CPU kernels parallelise with at::parallel_for, which runs serially unless compiled with OpenMP.
bool has_openmp() {
#ifdef _OPENMP
  return true;
#else
  return false;
#endif
}
}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "nerfpipe sampling kernels: image batch sampler, stratified and inverse-transform sampling, "
            "positional encoding, integrated positional encoding, occupancy-grid marching, packed volume rendering "
            "and grid update";
  m.def("has_cuda", &has_cuda, "True when the CUDA kernels were compiled in.");
  m.def("cuda_ops", &cuda_ops,
        "Names of the ops with CUDA kernels compiled in (every tensor op of the module in a CUDA build, "
        "[] in a CPU build).");
  m.def("has_openmp", &has_openmp, "True when the CPU kernels were compiled with OpenMP (multi-threaded).");
  m.def("uniform_fill", &nerfpipe::uniform_fill, "Fill a float32 [n] tensor with hash uniforms of (s1, s2, i).",
        py::arg("out"), py::arg("s1"), py::arg("s2"));
  m.def("ray_indices_fill", &nerfpipe::ray_indices_fill,
        "Fill an int64 [batch] tensor with uniform pixel indices image*H*W + y*W + x inside the centred crop.",
        py::arg("out"), py::arg("n_images"), py::arg("height"), py::arg("width"), py::arg("crop_h"),
        py::arg("crop_w"), py::arg("s1"), py::arg("s2"));
  m.def("stratified_endpoints", &nerfpipe::stratified_endpoints,
        "near, far [R] -> t [R, n_intervals+1] sorted interval endpoints.", py::arg("near"), py::arg("far"),
        py::arg("n_intervals"), py::arg("randomized"), py::arg("s1"), py::arg("s2"));
  m.def("sample_pdf", &nerfpipe::sample_pdf,
        "bins [R, B+1], weights [R, B] -> samples [R, n_samples] by inverse-transform sampling.",
        py::arg("bins"), py::arg("weights"), py::arg("n_samples"), py::arg("randomized"), py::arg("s1"),
        py::arg("s2"), py::arg("eps"));
  m.def("positional_encoding_forward", &nerfpipe::positional_encoding_forward,
        "x [P, C] -> [P, C*(include_input + 2*num_freqs)].", py::arg("x"), py::arg("num_freqs"),
        py::arg("include_input"));
  m.def("positional_encoding_backward", &nerfpipe::positional_encoding_backward,
        "x [P, C], grad_out [P, D] -> grad_x [P, C].", py::arg("x"), py::arg("grad_out"), py::arg("num_freqs"),
        py::arg("include_input"));
  m.def("integrated_pos_enc_forward", &nerfpipe::integrated_pos_enc_forward,
        "mean, var [P, C] -> [P, 2*C*num_freqs] ([sin block, cos block], index k*C + c in each).",
        py::arg("mean"), py::arg("var"), py::arg("num_freqs"));
  m.def("integrated_pos_enc_backward", &nerfpipe::integrated_pos_enc_backward,
        "mean, var [P, C], grad_out [P, 2*C*num_freqs] -> (grad_mean, grad_var) [P, C].", py::arg("mean"),
        py::arg("var"), py::arg("grad_out"), py::arg("num_freqs"));
  m.def("occ_march", &nerfpipe::occ_march,
        "origins, directions [R, 3], dir_norm, near, far [R], occupied [G^3], aabb [6] -> (ray_indices [S] int64, "
        "t_starts [S], t_ends [S], packed_info [R, 2] int64): fixed steps in occupied cells.",
        py::arg("origins"), py::arg("directions"), py::arg("dir_norm"), py::arg("near"), py::arg("far"),
        py::arg("occupied"), py::arg("aabb"), py::arg("resolution"), py::arg("step_size"), py::arg("randomized"),
        py::arg("s1"), py::arg("s2"));
  m.def("packed_weights_forward", &nerfpipe::packed_weights_forward,
        "density, t_starts, t_ends [S], packed_info [R, 2], dir_norm [R] -> (weights, transmittance) [S].",
        py::arg("density"), py::arg("t_starts"), py::arg("t_ends"), py::arg("packed_info"), py::arg("dir_norm"));
  m.def("packed_weights_backward", &nerfpipe::packed_weights_backward,
        "The forward's inputs and outputs, grad_weights, grad_trans [S] -> grad_density [S].", py::arg("density"),
        py::arg("t_starts"), py::arg("t_ends"), py::arg("packed_info"), py::arg("dir_norm"), py::arg("weights"),
        py::arg("trans"), py::arg("grad_weights"), py::arg("grad_trans"));
  m.def("packed_composite_forward", &nerfpipe::packed_composite_forward,
        "weights [S], rgb [S, 3], t_starts, t_ends [S], packed_info [R, 2], near, far [R], background [R, 3] -> "
        "(rgb [R, 3], acc [R], depth [R]).",
        py::arg("weights"), py::arg("rgb"), py::arg("t_starts"), py::arg("t_ends"), py::arg("packed_info"),
        py::arg("near"), py::arg("far"), py::arg("background"), py::arg("eps"));
  m.def("packed_composite_backward", &nerfpipe::packed_composite_backward,
        "The forward's inputs, grad_rgb [R, 3], grad_acc, grad_depth [R] -> (grad_weights [S], grad_rgb [S, 3]).",
        py::arg("weights"), py::arg("rgb"), py::arg("t_starts"), py::arg("t_ends"), py::arg("packed_info"),
        py::arg("near"), py::arg("far"), py::arg("background"), py::arg("eps"), py::arg("grad_color"),
        py::arg("grad_acc"), py::arg("grad_depth"));
  m.def("occ_grid_update", &nerfpipe::occ_grid_update,
        "In place: occ[c] = max over duplicates of max(decay occ_old[c], sigma step) for cells [K], sigma [K]; "
        "occupied = occ > min(mean(occ), threshold).",
        py::arg("occ"), py::arg("occupied"), py::arg("cells"), py::arg("sigma"), py::arg("decay"),
        py::arg("step_size"), py::arg("threshold"));
}
