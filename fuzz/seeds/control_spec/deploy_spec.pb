
 
digits/"onnx(Ã›2@cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd8BseedJEÒ	@ababababababababababababababababababababababababababababababababREÒ	@ababababababababababababababababababababababababababababababababZ
percentilebint8ropenvinoz
throughputˆ’f16˜