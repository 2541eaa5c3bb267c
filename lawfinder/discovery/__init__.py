"""The fit stage: fit every enumerated formula (`fit`, `score`) and the sparse combinations of
terms (`sparse`, `terms`), then accept the laws (`acceptance`, `exactness`, `controls`).
`stage.fit_conservation` runs it all."""
