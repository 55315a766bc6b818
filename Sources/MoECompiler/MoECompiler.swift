// MoECompiler
