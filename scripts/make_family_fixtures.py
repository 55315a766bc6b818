#!/usr/bin/env python3
"""Tiny whole-model checkpoints, one per MoE family, read by graphs/<family>.moe as they are.

For each family: a 2-layer causal LM (layer 1 an MoE layer) from transformers' own classes, every
parameter seeded (make_fixtures.init_all), written with `save_pretrained` (so the files carry the
Hub's tensor names and layout, whatever transformers renames on load); then reloaded with
`from_pretrained`, which must report no missing or unexpected keys, and the reloaded MoE block is
run on x.npy: its output is y.npy. meta.json names the graph, so the parity tests
(Tests/MoECompilerTests/ParityTests.swift) compile graphs/<family>.moe against the folder.

    ~/.venvs/ref/bin/python scripts/make_family_fixtures.py            # every family
    ~/.venvs/ref/bin/python scripts/make_family_fixtures.py dbrx aria  # some
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import warnings
import zlib

warnings.filterwarnings("ignore")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import safetensors.torch
import torch
import transformers

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from make_fixtures import init_all, rel_err  # noqa: E402

# Hub layouts save_pretrained does not write for a model built in memory: transformers' conversion
# mapping (conversion_mapping.py) transposes these stacked experts (dims 1 and 2) on load, because
# the Hub stores them input-first. The fixture stores them as the Hub does; reloading it with
# from_pretrained (which must then transpose them back) checks that this is the Hub's layout.
HUB_TRANSPOSED = {"qwen3_vl_moe": ("mlp.experts.gate_up_proj", "mlp.experts.down_proj")}

REPO = os.path.dirname(HERE)
FIXTURES = os.path.join(REPO, "Tests", "Fixtures")
TOKENS = 9
LAYER = 1
torch.set_num_threads(1)

TOK = dict(vocab_size=32, bos_token_id=1, eos_token_id=2, pad_token_id=0, tie_word_embeddings=False)
ATTN = dict(num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64)


def mlp(m, L):
    return m.model.layers[L].mlp


def granite_block(m, L):
    """The decoder layer adds the shared MLP to the routed output (GraniteMoeSharedDecoderLayer);
    it has none when shared_intermediate_size is 0."""
    layer = m.model.layers[L]
    if layer.shared_mlp is None:
        return layer.block_sparse_moe
    return lambda h: layer.block_sparse_moe(h) + layer.shared_mlp(h)


# fixture: (config class, model class, config arguments, the MoE block of layer L[, graph name])
FAMILIES = {
    "dbrx": ("DbrxConfig", "DbrxForCausalLM",
             dict(d_model=16, n_heads=2, n_layers=2, max_seq_len=64, vocab_size=32, pad_token_id=0,
                  attn_config=dict(kv_n_heads=1, rope_theta=10000.0),
                  ffn_config=dict(ffn_hidden_size=12, moe_num_experts=4, moe_top_k=2)),
             lambda m, L: m.transformer.blocks[L].ffn),
    "aria": ("AriaTextConfig", "AriaTextForCausalLM",
             dict(**TOK, **ATTN, hidden_size=16, intermediate_size=12, moe_num_experts=4, moe_topk=2,
                  moe_num_shared_experts=2),
             mlp),
    "granitemoe": ("GraniteMoeConfig", "GraniteMoeForCausalLM",
                   dict(**TOK, **ATTN, hidden_size=16, intermediate_size=12, num_local_experts=4,
                        num_experts_per_tok=2),
                   lambda m, L: m.model.layers[L].block_sparse_moe),
    "granitemoeshared": ("GraniteMoeSharedConfig", "GraniteMoeSharedForCausalLM",
                         dict(**TOK, **ATTN, hidden_size=16, intermediate_size=12, shared_intermediate_size=20,
                              num_local_experts=4, num_experts_per_tok=2),
                         granite_block),
    "ernie4_5_moe": ("Ernie4_5_MoeConfig", "Ernie4_5_MoeForCausalLM",
                     dict(**TOK, **ATTN, hidden_size=16, intermediate_size=24, moe_intermediate_size=12,
                          moe_num_experts=6, moe_k=2, moe_num_shared_experts=1, moe_layer_start_index=1),
                     mlp),
    "qwen3_moe": ("Qwen3MoeConfig", "Qwen3MoeForCausalLM",
                  dict(**TOK, **ATTN, hidden_size=16, intermediate_size=24, moe_intermediate_size=12, num_experts=6,
                       num_experts_per_tok=2, head_dim=8, mlp_only_layers=[0], norm_topk_prob=True),
                  mlp),
    "minimax": ("MiniMaxConfig", "MiniMaxForCausalLM",
                dict(**TOK, **ATTN, hidden_size=16, intermediate_size=12, num_local_experts=4, num_experts_per_tok=2,
                     head_dim=8, block_size=16, layer_types=["linear_attention", "full_attention"]),
                mlp),
    "hunyuan_v1_moe": ("HunYuanMoEV1Config", "HunYuanMoEV1ForCausalLM",
                       dict(**TOK, **ATTN, hidden_size=16, intermediate_size=12, num_experts=4, moe_topk=[1, 2],
                            head_dim=8),
                       mlp),
    "glm4_moe": ("Glm4MoeConfig", "Glm4MoeForCausalLM",
                 dict(**TOK, **ATTN, hidden_size=16, intermediate_size=24, moe_intermediate_size=12, n_routed_experts=8,
                      num_experts_per_tok=2, n_group=2, topk_group=1, n_shared_experts=1, first_k_dense_replace=1,
                      head_dim=8, routed_scaling_factor=1.5),
                 mlp),
    "dots1": ("Dots1Config", "Dots1ForCausalLM",
              dict(**TOK, **ATTN, hidden_size=16, intermediate_size=24, moe_intermediate_size=12, n_routed_experts=8,
                   num_experts_per_tok=2, n_group=2, topk_group=1, n_shared_experts=1, first_k_dense_replace=1,
                   head_dim=8, routed_scaling_factor=1.5, norm_topk_prob=True),
              mlp),
    "deepseek_v2": ("DeepseekV2Config", "DeepseekV2ForCausalLM",
                    dict(**TOK, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                         max_position_embeddings=64, hidden_size=16, intermediate_size=24, moe_intermediate_size=12,
                         n_routed_experts=8, num_experts_per_tok=2, n_group=None, topk_group=None,
                         topk_method="greedy", n_shared_experts=1, first_k_dense_replace=1, q_lora_rank=None,
                         kv_lora_rank=8, qk_rope_head_dim=4, qk_nope_head_dim=4, v_head_dim=4,
                         routed_scaling_factor=1.5),
                    mlp),
    # The V2 (not Lite) router: groups of experts, the best topk_group groups by their best expert.
    "deepseek_v2-grouped": ("DeepseekV2Config", "DeepseekV2ForCausalLM",
                            dict(**TOK, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                                 max_position_embeddings=64, hidden_size=16, intermediate_size=24,
                                 moe_intermediate_size=12, n_routed_experts=8, num_experts_per_tok=3, n_group=4,
                                 topk_group=2, topk_method="group_limited_greedy", n_shared_experts=2,
                                 first_k_dense_replace=1, q_lora_rank=None, kv_lora_rank=8, qk_rope_head_dim=4,
                                 qk_nope_head_dim=4, v_head_dim=4, routed_scaling_factor=2.0),
                            mlp, "deepseek_v2"),
    "jetmoe": ("JetMoeConfig", "JetMoeForCausalLM",
               dict(**TOK, num_hidden_layers=2, num_key_value_heads=2, kv_channels=4, max_position_embeddings=64,
                    hidden_size=16, intermediate_size=12, num_local_experts=4, num_experts_per_tok=2),
               mlp),
    "qwen3_next": ("Qwen3NextConfig", "Qwen3NextForCausalLM",
                   dict(**TOK, **ATTN, hidden_size=16, intermediate_size=24, moe_intermediate_size=12,
                        shared_expert_intermediate_size=20, num_experts=6, num_experts_per_tok=2, head_dim=8,
                        norm_topk_prob=True, layer_types=["linear_attention", "full_attention"],
                        linear_num_value_heads=2, linear_num_key_heads=1, linear_key_head_dim=4,
                        linear_value_head_dim=4),
                   mlp),
    "jamba": ("JambaConfig", "JambaForCausalLM",
              dict(**TOK, **ATTN, hidden_size=16, intermediate_size=12, num_experts=4, num_experts_per_tok=2,
                   expert_layer_period=2, expert_layer_offset=1, attn_layer_period=2, attn_layer_offset=0,
                   mamba_d_state=4, mamba_expand=2, mamba_dt_rank=4, use_mamba_kernels=False),
              lambda m, L: m.model.layers[L].feed_forward),
    "glm4_moe_lite": ("Glm4MoeLiteConfig", "Glm4MoeLiteForCausalLM",
                      dict(**TOK, **ATTN, hidden_size=16, intermediate_size=24, moe_intermediate_size=12,
                           n_routed_experts=8, num_experts_per_tok=2, n_group=2, topk_group=1, n_shared_experts=1,
                           first_k_dense_replace=1, routed_scaling_factor=1.5, q_lora_rank=8, kv_lora_rank=8,
                           qk_rope_head_dim=4, qk_nope_head_dim=4, v_head_dim=4),
                      mlp),
    "exaone_moe": ("ExaoneMoeConfig", "ExaoneMoeForCausalLM",
                   dict(**TOK, **ATTN, hidden_size=16, intermediate_size=24, moe_intermediate_size=12, num_experts=8,
                        num_experts_per_tok=2, n_group=2, topk_group=1, num_shared_experts=1, first_k_dense_replace=1,
                        head_dim=8, routed_scaling_factor=1.5),
                   mlp),
    "lfm2_moe": ("Lfm2MoeConfig", "Lfm2MoeForCausalLM",
                 dict(**TOK, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                      max_position_embeddings=64, hidden_size=16, intermediate_size=24, moe_intermediate_size=12,
                      num_experts=6, num_experts_per_tok=2, num_dense_layers=1, routed_scaling_factor=1.5,
                      layer_types=["full_attention", "conv"]),
                 lambda m, L: m.model.layers[L].feed_forward),
    "afmoe": ("AfmoeConfig", "AfmoeForCausalLM",
              dict(**TOK, **ATTN, hidden_size=16, intermediate_size=24, moe_intermediate_size=12, num_experts=6,
                   num_experts_per_tok=2, num_shared_experts=1, num_dense_layers=1, head_dim=8, route_scale=1.5),
              mlp),
    # Multimodal: the language model's layers are under model.language_model.
    "qwen3_vl_moe": ("Qwen3VLMoeConfig", "Qwen3VLMoeForConditionalGeneration",
                     dict(text_config=dict(vocab_size=32, hidden_size=16, intermediate_size=24, moe_intermediate_size=12,
                                           num_experts=4, num_experts_per_tok=2, num_hidden_layers=2,
                                           num_attention_heads=2, num_key_value_heads=1, head_dim=8,
                                           decoder_sparse_step=1, mlp_only_layers=[0],
                                           rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                                            "mrope_section": [1, 1, 2]}),
                          vision_config=dict(depth=1, hidden_size=16, intermediate_size=16, num_heads=2,
                                             out_hidden_size=16, patch_size=2, temporal_patch_size=2,
                                             spatial_merge_size=1, num_position_embeddings=16,
                                             deepstack_visual_indexes=[0])),
                     lambda m, L: m.model.language_model.layers[L].mlp),
    # Text and vision experts in one list (text first); on text tokens only the text experts run.
    "ernie4_5_vl_moe": ("Ernie4_5_VLMoeConfig", "Ernie4_5_VLMoeForConditionalGeneration",
                        dict(text_config=dict(vocab_size=32, hidden_size=16, intermediate_size=24,
                                              moe_intermediate_size=[12, 8], moe_k=2, moe_num_experts=6,
                                              moe_num_shared_experts=1, num_hidden_layers=2, num_attention_heads=2,
                                              num_key_value_heads=1, mlp_layer_types=["dense", "sparse"],
                                              rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                                               "mrope_section": [1, 1, 2]}),
                             vision_config=dict(depth=1, hidden_size=16, num_heads=2, intermediate_size=16,
                                                patch_size=2, spatial_merge_size=1)),
                        lambda m, L: (lambda h: m.model.language_model.layers[L].mlp(h)[0])),
    "glm4v_moe": ("Glm4vMoeConfig", "Glm4vMoeForConditionalGeneration",
                  dict(text_config=dict(vocab_size=32, hidden_size=16, intermediate_size=24, moe_intermediate_size=12,
                                        n_routed_experts=8, num_experts_per_tok=2, n_group=2, topk_group=1,
                                        n_shared_experts=1, first_k_dense_replace=1, num_hidden_layers=2,
                                        num_attention_heads=2, num_key_value_heads=1, head_dim=8,
                                        routed_scaling_factor=1.5,
                                        rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                                         "mrope_section": [1, 1, 2], "partial_rotary_factor": 0.5}),
                       vision_config=dict(depth=1, hidden_size=16, intermediate_size=16, num_heads=2, out_hidden_size=16,
                                          patch_size=2, temporal_patch_size=2, spatial_merge_size=1, image_size=8)),
                  lambda m, L: m.model.language_model.layers[L].mlp),
    # PhiMoE: sparsemixer routing (its inference form); router_jitter_noise 0.3 so the mask matters.
    "phimoe": ("PhimoeConfig", "PhimoeForCausalLM",
               dict(**TOK, **ATTN, hidden_size=16, intermediate_size=12, num_local_experts=6, num_experts_per_tok=2,
                    router_jitter_noise=0.3),
               mlp),
    # Llama 4 (text): sigmoid top-1 scaling the expert's input; stacked input-first experts; shared MLP.
    "llama4": ("Llama4TextConfig", "Llama4ForCausalLM",
               dict(**TOK, **ATTN, hidden_size=16, intermediate_size=12, intermediate_size_mlp=24, head_dim=8,
                    num_local_experts=6, num_experts_per_tok=1, moe_layers=[1]),
               lambda m, L: (lambda h: m.model.layers[L].feed_forward(h)[0].reshape(h.shape))),
    "flex_olmo": ("FlexOlmoConfig", "FlexOlmoForCausalLM",
                  dict(**TOK, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                       max_position_embeddings=64, hidden_size=16, intermediate_size=12, num_experts=4,
                       num_experts_per_tok=2),
                  mlp),
    # gpt-oss: router bias, top-k then softmax, experts as an expression (biases, clamps, α);
    # swiglu_limit small so that the clamps bind on these tiny activations.
    "gpt_oss": ("GptOssConfig", "GptOssForCausalLM",
                dict(**TOK, **ATTN, hidden_size=16, intermediate_size=12, head_dim=8, num_local_experts=6,
                     num_experts_per_tok=2, swiglu_limit=0.4, layer_types=["sliding_attention", "full_attention"],
                     sliding_window=8),
                lambda m, L: (lambda h: m.model.layers[L].mlp(h)[0].reshape(h.shape))),
    # NLLB-MoE: encoder layer 1 sparse; a capacity fraction that drops pairs of 9 tokens. The
    # reference is the block's intended semantics (nllb_intended), not transformers' dispatch.
    "nllb_moe": ("NllbMoeConfig", "NllbMoeForConditionalGeneration",
                 dict(vocab_size=32, d_model=16, encoder_layers=2, decoder_layers=2, encoder_ffn_dim=12,
                      decoder_ffn_dim=12, encoder_attention_heads=2, decoder_attention_heads=2,
                      max_position_embeddings=64, num_experts=4, encoder_sparse_step=2, decoder_sparse_step=2,
                      moe_eval_capacity_token_fraction=0.3, moe_token_dropout=0.2, pad_token_id=1,
                      decoder_start_token_id=2),
                 lambda m, L: nllb_intended(m.model.encoder.layers[L].ffn)),
    # Hunyuan-V4: DeepSeek-V3's router, a clamped SwiGLU (swiglu_limit small so the clamps bind).
    "hy_v4": ("HYV4Config", "HYV4ForCausalLM",
              dict(vocab_size=32, bos_token_id=1, eos_token_id=2, pad_token_id=0, hidden_size=16, intermediate_size=24,
                   moe_intermediate_size=12, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                   head_dim=8, n_routed_experts=8, n_shared_experts=1, num_experts_per_tok=2, n_group=2, topk_group=1,
                   q_lora_rank=8, kv_lora_rank=8, qk_nope_head_dim=4, qk_rope_head_dim=4, v_head_dim=8, index_head_dim=8,
                   index_n_heads=2, index_topk=4, max_position_embeddings=64, swiglu_limit=0.3),
              mlp),
    # Nemotron-H: a hybrid stack ("*E": attention, then the MoE mixer); relu² experts.
    "nemotron_h": ("NemotronHConfig", "NemotronHForCausalLM",
                   dict(vocab_size=32, bos_token_id=1, eos_token_id=2, pad_token_id=0, hidden_size=16, num_hidden_layers=2,
                        hybrid_override_pattern="*E", num_attention_heads=2, num_key_value_heads=1, head_dim=8,
                        n_routed_experts=8, num_experts_per_tok=2, moe_intermediate_size=12,
                        moe_shared_expert_intermediate_size=20, n_group=2, topk_group=1, intermediate_size=24,
                        routed_scaling_factor=1.5, mamba_num_heads=2, mamba_head_dim=8, ssm_state_size=8, n_groups=1),
                   lambda m, L: m.model.layers[L].mixer),
    # LongCat-Flash: 4 routed SwiGLU experts and 3 zero-computation (identity) experts, top-3.
    "longcat_flash": ("LongcatFlashConfig", "LongcatFlashForCausalLM",
                      dict(vocab_size=32, bos_token_id=1, eos_token_id=2, pad_token_id=0, hidden_size=16, num_layers=2,
                           num_attention_heads=2, num_key_value_heads=1, ffn_hidden_size=24, expert_ffn_hidden_size=12,
                           n_routed_experts=4, zero_expert_num=3, moe_topk=3, routed_scaling_factor=1.5, kv_lora_rank=8,
                           q_lora_rank=8, qk_rope_head_dim=4, qk_nope_head_dim=4, v_head_dim=8, max_position_embeddings=64),
                      mlp),
    # Ling/Ring linear: DeepSeek-V3's router; Bailing's config keys and "gate.expert_bias" on the Hub.
    "bailing_hybrid": ("BailingHybridConfig", "BailingHybridForCausalLM",
                       dict(**TOK, **ATTN, hidden_size=16, intermediate_size=24, moe_intermediate_size=12,
                            num_local_experts=8, num_experts_per_tok=2, n_group=2, topk_group=1, n_shared_experts=1,
                            routed_scaling_factor=1.5, layer_types=["full_attention", "full_attention"],
                            mlp_layer_types=["dense", "sparse"], kv_lora_rank=8, qk_rope_head_dim=4,
                            qk_nope_head_dim=4, v_head_dim=4),
                       mlp),
    # Top-k on the logits, then softmax; one shared expert averaged with the routed output.
    "cohere2_moe": ("Cohere2MoeConfig", "Cohere2MoeForCausalLM",
                    dict(**TOK, **ATTN, hidden_size=16, intermediate_size=12, prefix_dense_intermediate_size=24,
                         num_experts=6, num_experts_per_tok=2, num_shared_experts=1, head_dim=8,
                         expert_selection_fn="softmax", shared_expert_combination_strategy="average",
                         mlp_layer_types=["dense", "sparse"]),
                    mlp),
    "glm_moe_dsa": ("GlmMoeDsaConfig", "GlmMoeDsaForCausalLM",
                    dict(**TOK, **ATTN, hidden_size=16, intermediate_size=24, moe_intermediate_size=12,
                         n_routed_experts=8, num_experts_per_tok=2, n_group=2, topk_group=1, n_shared_experts=1,
                         routed_scaling_factor=1.5, mlp_layer_types=["dense", "sparse"], q_lora_rank=8,
                         kv_lora_rank=8, qk_rope_head_dim=4, qk_nope_head_dim=4, v_head_dim=4, index_n_heads=2,
                         index_head_dim=8, index_topk=4),
                    mlp),
    "granitemoehybrid": ("GraniteMoeHybridConfig", "GraniteMoeHybridForCausalLM",
                         dict(**TOK, **ATTN, hidden_size=16, intermediate_size=12, shared_intermediate_size=20,
                              num_local_experts=4, num_experts_per_tok=2, layer_types=["linear_attention", "full_attention"],
                              mamba_n_heads=2, mamba_d_head=16, mamba_n_groups=1, mamba_d_state=4),
                         granite_block),
    "granitemoe_swa": ("GraniteMoeSWAConfig", "GraniteMoeSWAForCausalLM",
                       dict(**TOK, **ATTN, hidden_size=16, intermediate_size=12, shared_intermediate_size=20,
                            num_local_experts=4, num_experts_per_tok=2),
                       granite_block),
    # transformers runs Sarvam-MoE with GLM-4.5's classes; the Hub names the bias "gate.expert_bias".
    "sarvam_moe": ("SarvamMoEConfig", "Glm4MoeForCausalLM",
                   dict(**TOK, **ATTN, hidden_size=16, intermediate_size=24, moe_intermediate_size=12,
                        n_routed_experts=8, num_experts_per_tok=2, n_group=2, topk_group=1, n_shared_experts=1,
                        first_k_dense_replace=1, head_dim=8, routed_scaling_factor=1.5),
                   mlp),
    "qwen3_5_moe": ("Qwen3_5MoeConfig", "Qwen3_5MoeForConditionalGeneration",
                    dict(text_config=dict(vocab_size=32, hidden_size=16, moe_intermediate_size=12,
                                          shared_expert_intermediate_size=20, num_experts=6, num_experts_per_tok=2,
                                          num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                                          head_dim=8, layer_types=["linear_attention", "full_attention"],
                                          linear_num_value_heads=2, linear_num_key_heads=1, linear_key_head_dim=4,
                                          linear_value_head_dim=4,
                                          rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                                           "mrope_section": [1, 1, 2], "partial_rotary_factor": 0.5}),
                         vision_config=dict(depth=1, hidden_size=16, intermediate_size=16, num_heads=2,
                                            out_hidden_size=16, patch_size=2, temporal_patch_size=2,
                                            spatial_merge_size=1, num_position_embeddings=16)),
                    lambda m, L: m.model.language_model.layers[L].mlp),
    "deepseek_v32": ("DeepseekV32Config", "DeepseekV32ForCausalLM",
                     dict(**TOK, **ATTN, hidden_size=16, intermediate_size=24, moe_intermediate_size=12,
                          n_routed_experts=8, num_experts_per_tok=2, n_group=2, topk_group=1, n_shared_experts=1,
                          routed_scaling_factor=1.5, mlp_layer_types=["dense", "sparse"], q_lora_rank=8,
                          kv_lora_rank=8, qk_rope_head_dim=4, qk_nope_head_dim=4, v_head_dim=4, index_n_heads=2,
                          index_head_dim=8, index_topk=4),
                     mlp),
    "solar_open": ("SolarOpenConfig", "SolarOpenForCausalLM",
                   dict(**TOK, **ATTN, hidden_size=16, intermediate_size=24, moe_intermediate_size=12,
                        n_routed_experts=8, num_experts_per_tok=2, n_group=2, topk_group=1, n_shared_experts=1,
                        routed_scaling_factor=1.5, head_dim=8),
                   mlp),
    "mellum": ("MellumConfig", "MellumForCausalLM",
               dict(**TOK, **ATTN, hidden_size=16, intermediate_size=24, moe_intermediate_size=12, num_experts=6,
                    num_experts_per_tok=2, head_dim=8, mlp_layer_types=["dense", "sparse"], norm_topk_prob=True),
               mlp),
    # The correction bias is the block's, not the gate's.
    "minimax_m2": ("MiniMaxM2Config", "MiniMaxM2ForCausalLM",
                   dict(**TOK, **ATTN, hidden_size=16, intermediate_size=12, num_local_experts=6, num_experts_per_tok=2,
                        head_dim=8),
                   mlp),
    # Softmax scores, DeepSeek-V3's groups masked with 0, no bias; 4 groups of 2 so the groups matter.
    "mistral4": ("Mistral4Config", "Mistral4ForCausalLM",
                 dict(**TOK, **ATTN, hidden_size=16, intermediate_size=24, moe_intermediate_size=12,
                      n_routed_experts=8, num_experts_per_tok=3, n_group=4, topk_group=2, n_shared_experts=1,
                      routed_scaling_factor=1.5, first_k_dense_replace=1, q_lora_rank=8, kv_lora_rank=8,
                      qk_rope_head_dim=4, qk_nope_head_dim=4, v_head_dim=4),
                 mlp),
    "mimo_v2_flash": ("MiMoV2FlashConfig", "MiMoV2FlashForCausalLM",
                      dict(**TOK, **ATTN, hidden_size=16, intermediate_size=24, moe_intermediate_size=12, head_dim=8,
                           n_routed_experts=8, num_experts_per_tok=2, n_group=2, topk_group=1,
                           routed_scaling_factor=1.5, mlp_layer_types=["dense", "sparse"]),
                      mlp),
    # DeepSeek-V3's block and an RMSNorm of its output (stored on the decoder layer).
    "axk1": ("AXK1Config", "AXK1ForCausalLM",
             dict(**TOK, **ATTN, hidden_size=16, intermediate_size=24, moe_intermediate_size=12, n_routed_experts=8,
                  num_experts_per_tok=2, n_group=2, topk_group=1, n_shared_experts=1, routed_scaling_factor=1.5,
                  mlp_layer_types=["dense", "sparse"], q_lora_rank=8, kv_lora_rank=8, qk_rope_head_dim=4,
                  qk_nope_head_dim=4, v_head_dim=4),
             mlp),
    "hy_v3": ("HYV3Config", "HYV3ForCausalLM",
              dict(**TOK, **ATTN, hidden_size=16, intermediate_size=24, moe_intermediate_size=12, head_dim=8,
                   num_experts=8, num_experts_per_tok=2, num_shared_experts=1, router_scaling_factor=1.5,
                   mlp_layer_types=["dense", "sparse"]),
              mlp),
    "lara_mini": ("LaraMiniConfig", "LaraMiniForCausalLM",
                  dict(**TOK, **ATTN, hidden_size=16, intermediate_size=24, moe_intermediate_size=12, head_dim=8,
                       num_experts=6, num_experts_per_tok=2, shared_expert_intermediate_size=20, norm_topk_prob=True,
                       layer_types=["full_attention", "full_attention"]),
                  mlp),
    # The whole omni model without its audio output (no talker, no code2wav); the thinker's text MoE.
    "qwen3_omni_moe": ("Qwen3OmniMoeConfig", "Qwen3OmniMoeForConditionalGeneration",
                       dict(thinker_config=dict(
                                text_config=dict(vocab_size=32, hidden_size=16, intermediate_size=24,
                                                 moe_intermediate_size=12, num_experts=6, num_experts_per_tok=2,
                                                 num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                                                 head_dim=8, decoder_sparse_step=1, mlp_only_layers=[0],
                                                 norm_topk_prob=True,
                                                 rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                                                  "mrope_section": [1, 1, 2]}),
                                audio_config=dict(num_mel_bins=8, encoder_layers=1, encoder_attention_heads=2,
                                                  encoder_ffn_dim=16, d_model=16, output_dim=16,
                                                  downsample_hidden_size=8, n_window=4, max_source_positions=16),
                                vision_config=dict(depth=1, hidden_size=16, intermediate_size=16, num_heads=2,
                                                   out_hidden_size=16, patch_size=2, temporal_patch_size=2,
                                                   spatial_merge_size=1, num_position_embeddings=16,
                                                   deepstack_visual_indexes=[0])),
                            enable_audio_output=False),
                       lambda m, L: m.thinker.model.language_model.layers[L].mlp),
}



def nllb_intended(block):
    """NllbMoeSparseMLP as fairseq means it: each token's chosen experts (router_probs > 0, from
    transformers' own NllbMoeTop2Router), weighted, times 1 - moe_token_dropout. transformers 5.24's
    NllbMoeExperts one-hot-encodes the 0/1 top-1 *mask*, so it runs experts 0 and 1 instead."""
    def run(h):
        x = h.reshape(-1, h.shape[-1])
        _, probs, _ = block.router(x)
        y = torch.zeros_like(x)
        for e in range(block.num_experts):
            rows = (probs[:, e] > 0).nonzero().flatten()
            if len(rows):
                out = block.experts[f"expert_{e}"](x[rows]) * probs[rows, e, None]
                y.index_add_(0, rows, out * (1 - block.experts.moe_token_dropout))
        return y.reshape(h.shape)
    return run


def hidden_size(kwargs: dict) -> int:
    """The MoE block's width: top level, or in the (thinker's) text config."""
    for c in (kwargs, kwargs.get("text_config", {}), kwargs.get("thinker_config", {}).get("text_config", {})):
        if c.get("hidden_size") or c.get("d_model"):
            return c.get("hidden_size") or c["d_model"]
    raise KeyError("hidden_size")


def build(name: str, kwargs: dict, seed: int, out: str):
    """Writes the family's tiny model with config `kwargs` to `out` (save_pretrained, the Hub's
    layout), reloads it, and runs the reloaded MoE block of layer 1 on a seeded x.
    Returns (x, y, reloaded model, relative difference of the reloaded block from the saved one)."""
    config_class, model_class, _, block_of = FAMILIES[name][:4]
    family = FAMILIES[name][4] if len(FAMILIES[name]) > 4 else name
    if os.path.exists(out):
        shutil.rmtree(out)
    os.makedirs(out)
    cls = getattr(transformers, model_class)
    torch.manual_seed(seed)
    model = cls(getattr(transformers, config_class)(**kwargs))
    init_all(model, seed, bias_std=0.1)
    # Selection biases large enough to change which experts are chosen (sigmoid scores are
    # O(1), softmax ones O(1/E)); checked by the graphs failing without their bias.
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for pname, t in list(model.named_parameters()) + list(model.named_buffers()):
            if pname.endswith(("e_score_correction_bias", "expert_bias")):
                t.copy_(0.3 * torch.randn(tuple(t.shape), generator=g))
    model.eval()
    model.save_pretrained(out)
    if name in HUB_TRANSPOSED:
        path = os.path.join(out, "model.safetensors")
        tensors = safetensors.torch.load_file(path)
        for k in tensors:
            if k.endswith(HUB_TRANSPOSED[name]):
                tensors[k] = tensors[k].transpose(1, 2).contiguous()
        safetensors.torch.save_file(tensors, path, metadata={"format": "pt"})
    # What the files say: reload them, and take the reference output from the reloaded model.
    reloaded, info = cls.from_pretrained(out, dtype=torch.float32, output_loading_info=True)
    reloaded.eval()
    problems = {k: sorted(map(str, v)) for k, v in info.items() if v}
    if problems:
        raise SystemExit(f"{family}: reloading reports {problems}")
    if hasattr(reloaded, "set_experts_implementation"):
        try:
            reloaded.set_experts_implementation("eager")
            model.set_experts_implementation("eager")
        except Exception:
            pass
    x = torch.randn(TOKENS, hidden_size(kwargs), generator=torch.Generator().manual_seed(seed * 7919 + 17))
    with torch.no_grad():
        y = block_of(reloaded, LAYER)(x[None])[0]
        y_memory = block_of(model, LAYER)(x[None])[0]
    return x, y, reloaded, rel_err(y.numpy(), y_memory.numpy())


def make(name: str) -> str:
    config_class, model_class, kwargs, block_of = FAMILIES[name][:4]
    family = FAMILIES[name][4] if len(FAMILIES[name]) > 4 else name
    seed = 1000 + zlib.crc32(name.encode()) % 1000  # stable when fixtures are added
    out = os.path.join(FIXTURES, f"{name}-tiny")
    x, y, reloaded, reload_err = build(name, kwargs, seed, out)
    if reload_err > 1e-6:
        raise SystemExit(f"{family}: the reloaded block differs from the saved one ({reload_err:.2e})")
    np.save(os.path.join(out, "x.npy"), x.numpy().astype(np.float32))
    np.save(os.path.join(out, "y.npy"), y.numpy().astype(np.float32))
    os.remove(os.path.join(out, "generation_config.json")) if os.path.exists(os.path.join(out, "generation_config.json")) else None
    meta = {
        "graph": f"graphs/{family}.moe",
        "set": {"layer": LAYER},
        "inputs": {"x": "x.npy"},
        "outputs": {"y": "y.npy"},
        "family": family,
        "model_class": model_class,
        "block": (type(block_of(reloaded, LAYER)).__name__ if isinstance(block_of(reloaded, LAYER), torch.nn.Module)
                  else "the MoE output of decoder layer 1, as FAMILIES in make_family_fixtures.py computes it"),
        "seed": seed,
        "tokens": TOKENS,
        "reload_rel_err": reload_err,
        "hub_transposed": list(HUB_TRANSPOSED.get(name, ())),
        "transformers": transformers.__version__,
        "torch": torch.__version__,
    }
    with open(os.path.join(out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    size = sum(os.path.getsize(os.path.join(out, n)) for n in os.listdir(out))
    return f"{family}: {out} ({size // 1024} KB, |y| max {float(y.abs().max()):.3f})"


if __name__ == "__main__":
    for fam in sys.argv[1:] or sorted(FAMILIES):
        print(make(fam), flush=True)
