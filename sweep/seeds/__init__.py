"""One configuration trained again outside the study's search: with other seeds (`baseline`,
`confirm`, each seed on its own validation fold) and the choice among them, or with its own
seed (`reproduce`)."""
