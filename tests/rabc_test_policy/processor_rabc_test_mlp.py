from lerobot.processor import (
    AddBatchDimensionProcessorStep,
    DeviceProcessorStep,
    NormalizerProcessorStep,
    PolicyProcessorPipeline,
    UnnormalizerProcessorStep,
    policy_action_to_transition,
    transition_to_policy_action,
)


def make_rabc_test_mlp_pre_post_processors(config, dataset_stats=None, **_):
    features = {**config.input_features, **config.output_features}
    pre = PolicyProcessorPipeline(steps=[
        AddBatchDimensionProcessorStep(),
        NormalizerProcessorStep(features=features, norm_map=config.normalization_mapping, stats=dataset_stats),
        DeviceProcessorStep(device=config.device)], name="policy_preprocessor")
    post = PolicyProcessorPipeline(steps=[
        UnnormalizerProcessorStep(features=config.output_features, norm_map=config.normalization_mapping, stats=dataset_stats),
        DeviceProcessorStep(device="cpu")], name="policy_postprocessor",
        to_transition=policy_action_to_transition, to_output=transition_to_policy_action)
    return pre, post
