// Compile-time layer kinds of the nn module, for the model-level transforms
// (convert(), structured channel removal) that walk a sequential<...> and treat
// each layer by what it is.
#pragma once

#include <concepts>
#include <cstddef>
#include <type_traits>
#include <utility>

#include "qprune/nn/activations.hpp"
#include "qprune/nn/batch_norm.hpp"
#include "qprune/nn/conv2d.hpp"
#include "qprune/nn/dense.hpp"
#include "qprune/nn/pooling.hpp"

namespace qprune::nn::detail {

template <class T> struct is_dense : std::false_type {};
template <class W, class P, class A> struct is_dense<dense<W, P, A>> : std::true_type {};
template <class T> struct is_conv : std::false_type {};
template <class W, class P, class A> struct is_conv<conv2d<W, P, A>> : std::true_type {};

template <class L> constexpr bool is_dense_v = is_dense<std::remove_cvref_t<L>>::value;
template <class L> constexpr bool is_conv_v = is_conv<std::remove_cvref_t<L>>::value;
template <class L> constexpr bool is_relu_v = std::same_as<std::remove_cvref_t<L>, relu>;
template <class L> constexpr bool is_relu6_v = std::same_as<std::remove_cvref_t<L>, relu6>;
template <class L> constexpr bool is_bn_v = std::same_as<std::remove_cvref_t<L>, batch_norm>;
template <class L> constexpr bool is_flatten_v = std::same_as<std::remove_cvref_t<L>, flatten>;
template <class L>
constexpr bool is_pool_v =
    std::same_as<std::remove_cvref_t<L>, max_pool2d> || std::same_as<std::remove_cvref_t<L>, avg_pool2d>;

/// The type of layer I of a sequential model.
template <class Model, std::size_t I>
using layer_t = std::remove_cvref_t<decltype(std::declval<Model&>().template get<I>())>;

}  // namespace qprune::nn::detail

namespace qprune::nn {

/// Whether L is an nn::dense<...> (cv-ref qualifiers ignored).
template <class L>
inline constexpr bool is_dense_layer_v = detail::is_dense_v<L>;
/// Whether L is an nn::conv2d<...> (cv-ref qualifiers ignored).
template <class L>
inline constexpr bool is_conv_layer_v = detail::is_conv_v<L>;

}  // namespace qprune::nn
