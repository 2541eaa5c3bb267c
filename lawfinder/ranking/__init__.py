"""The ranking stage: meta-tailor a predictor with each accepted law over several seeds
(`stage`), compare the laws on held-out data (`compare`), roll predictors out (`rollout`);
the HNN baseline (`hnn`)."""
