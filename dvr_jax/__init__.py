"""dvr_jax: explainable data valuation and metric adaption for recommendation, in JAX."""
