// Declarations of the extension's host functions (defined per topic in <topic>.cpp) and of the
// CUDA launchers (defined in cuda/<topic>.cu, compiled only when WITH_CUDA is set).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <tuple>

namespace nerfpipe {

// ray_sampler.cpp
void uniform_fill(at::Tensor out, int64_t s1, int64_t s2);
void ray_indices_fill(at::Tensor out, int64_t n_images, int64_t height, int64_t width, int64_t crop_h,
                      int64_t crop_w, int64_t s1, int64_t s2);
// stratified.cpp
at::Tensor stratified_endpoints(const at::Tensor& near, const at::Tensor& far, int64_t n_intervals,
                                bool randomized, int64_t s1, int64_t s2);
// pdf_sampler.cpp
at::Tensor sample_pdf(const at::Tensor& bins, const at::Tensor& weights, int64_t n_samples, bool randomized,
                      int64_t s1, int64_t s2, double eps);
// encoding.cpp
at::Tensor positional_encoding_forward(const at::Tensor& x, int64_t num_freqs, bool include_input);
at::Tensor positional_encoding_backward(const at::Tensor& x, const at::Tensor& grad_out, int64_t num_freqs,
                                        bool include_input);
at::Tensor integrated_pos_enc_forward(const at::Tensor& mean, const at::Tensor& var, int64_t num_freqs);
std::tuple<at::Tensor, at::Tensor> integrated_pos_enc_backward(const at::Tensor& mean, const at::Tensor& var,
                                                               const at::Tensor& grad_out, int64_t num_freqs);
// occgrid.cpp
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> occ_march(
    const at::Tensor& origins, const at::Tensor& directions, const at::Tensor& dir_norm, const at::Tensor& near,
    const at::Tensor& far, const at::Tensor& occupied, const at::Tensor& aabb, int64_t resolution,
    double step_size, bool randomized, int64_t s1, int64_t s2);
std::tuple<at::Tensor, at::Tensor> packed_weights_forward(const at::Tensor& density, const at::Tensor& t_starts,
                                                          const at::Tensor& t_ends, const at::Tensor& packed_info,
                                                          const at::Tensor& dir_norm);
at::Tensor packed_weights_backward(const at::Tensor& density, const at::Tensor& t_starts, const at::Tensor& t_ends,
                                   const at::Tensor& packed_info, const at::Tensor& dir_norm,
                                   const at::Tensor& weights, const at::Tensor& trans,
                                   const at::Tensor& grad_weights, const at::Tensor& grad_trans);
std::tuple<at::Tensor, at::Tensor, at::Tensor> packed_composite_forward(
    const at::Tensor& weights, const at::Tensor& rgb, const at::Tensor& t_starts, const at::Tensor& t_ends,
    const at::Tensor& packed_info, const at::Tensor& near, const at::Tensor& far, const at::Tensor& background,
    double eps);
std::tuple<at::Tensor, at::Tensor> packed_composite_backward(
    const at::Tensor& weights, const at::Tensor& rgb, const at::Tensor& t_starts, const at::Tensor& t_ends,
    const at::Tensor& packed_info, const at::Tensor& near, const at::Tensor& far, const at::Tensor& background,
    double eps, const at::Tensor& grad_color, const at::Tensor& grad_acc, const at::Tensor& grad_depth);
void occ_grid_update(at::Tensor occ, at::Tensor occupied, const at::Tensor& cells, const at::Tensor& sigma,
                     double decay, double step_size, double threshold);

#ifdef WITH_CUDA
void uniform_fill_cuda(at::Tensor& out, uint32_t s1, uint32_t s2);
void ray_indices_fill_cuda(at::Tensor& out, int64_t n_images, int64_t height, int64_t width, int64_t crop_h,
                           int64_t crop_w, uint32_t s1, uint32_t s2);
void stratified_endpoints_cuda(const at::Tensor& near, const at::Tensor& far, at::Tensor& out,
                               bool randomized, uint32_t s1, uint32_t s2);
void sample_pdf_cuda(const at::Tensor& bins, const at::Tensor& weights, at::Tensor& out, bool randomized,
                     uint32_t s1, uint32_t s2, double eps);
void positional_encoding_forward_cuda(const at::Tensor& x, at::Tensor& out, int64_t num_freqs,
                                      bool include_input);
void positional_encoding_backward_cuda(const at::Tensor& x, const at::Tensor& grad_out, at::Tensor& grad_x,
                                       int64_t num_freqs, bool include_input);
void integrated_pos_enc_forward_cuda(const at::Tensor& mean, const at::Tensor& var, at::Tensor& out,
                                     int64_t num_freqs);
void integrated_pos_enc_backward_cuda(const at::Tensor& mean, const at::Tensor& var, const at::Tensor& grad_out,
                                      at::Tensor& grad_mean, at::Tensor& grad_var, int64_t num_freqs);
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> occ_march_cuda(
    const at::Tensor& origins, const at::Tensor& directions, const at::Tensor& dir_norm, const at::Tensor& near,
    const at::Tensor& far, const at::Tensor& occupied, const at::Tensor& aabb, int64_t resolution,
    double step_size, bool randomized, uint32_t s1, uint32_t s2);
void packed_weights_forward_cuda(const at::Tensor& density, const at::Tensor& t_starts, const at::Tensor& t_ends,
                                 const at::Tensor& packed_info, const at::Tensor& dir_norm, at::Tensor& weights,
                                 at::Tensor& trans);
void packed_weights_backward_cuda(const at::Tensor& density, const at::Tensor& t_starts, const at::Tensor& t_ends,
                                  const at::Tensor& packed_info, const at::Tensor& dir_norm,
                                  const at::Tensor& weights, const at::Tensor& trans, const at::Tensor& grad_weights,
                                  const at::Tensor& grad_trans, at::Tensor& grad);
void packed_composite_forward_cuda(const at::Tensor& weights, const at::Tensor& rgb, const at::Tensor& t_starts,
                                   const at::Tensor& t_ends, const at::Tensor& packed_info, const at::Tensor& near,
                                   const at::Tensor& far, const at::Tensor& background, double eps,
                                   at::Tensor& color, at::Tensor& acc, at::Tensor& depth);
void packed_composite_backward_cuda(const at::Tensor& weights, const at::Tensor& rgb, const at::Tensor& t_starts,
                                    const at::Tensor& t_ends, const at::Tensor& packed_info, const at::Tensor& near,
                                    const at::Tensor& far, const at::Tensor& background, double eps,
                                    const at::Tensor& grad_color, const at::Tensor& grad_acc,
                                    const at::Tensor& grad_depth, at::Tensor& grad_w, at::Tensor& grad_rgb);
// The amax scatter of occ_grid_update (the host function then sets `occupied`).
void occ_grid_update_cuda(at::Tensor& occ, const at::Tensor& cells, const at::Tensor& sigma, double decay,
                           double step_size);
#endif

}  // namespace nerfpipe
