// Package classvalidator checks a request body against a DTO class as
// NestJS's ValidationPipe does with class-validator, whitelist and
// forbidNonWhitelisted: the same checks, the same messages in the same
// order. A body that passes fills a Go struct, so handlers receive typed
// input.
//
// A Class is declared once per DTO, as its TypeScript class is:
//
//	var loginDTO = classvalidator.NewClass(
//		classvalidator.Required("email", func(in *loginInput) *string { return &in.Email },
//			classvalidator.IsEmail()),
//		...
//	)
//
// and Validate returns the struct, or a *ValidationError with the messages
// of NestJS's 400.
package classvalidator

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// An Object is a plain JavaScript object as class-transformer hands it to
// class-validator: own properties in JavaScript's order. *bodyparser.Object
// is one.
type Object interface {
	Len() int
	At(i int) (key string, value any)
	Get(key string) (value any, ok bool)
}

// A Class is a DTO class: its properties in declaration order, each bound
// to a string field of T.
type Class[T any] struct {
	props []Property[T]
}

// A Property is one property of a DTO class, with its decorators.
type Property[T any] struct {
	name     string
	optional bool   // @IsOptional(): null or missing skips every rule
	rules    []Rule // in the order class-validator reports them: the decorator nearest the property first
	set      func(dst *T, s string)
}

// Required declares a property whose value, once valid, is the string at
// field(dst).
func Required[T any](name string, field func(dst *T) *string, rules ...Rule) Property[T] {
	return Property[T]{name: name, rules: named(name, rules),
		set: func(dst *T, s string) { *field(dst) = s }}
}

// Optional declares an @IsOptional() property: null or missing skips its
// rules and leaves *field(dst) nil; any other value must pass them.
func Optional[T any](name string, field func(dst *T) **string, rules ...Rule) Property[T] {
	return Property[T]{name: name, optional: true, rules: named(name, rules),
		set: func(dst *T, s string) { *field(dst) = &s }}
}

// NewClass returns the class of these properties. Each must have a rule
// that passes strings only (IsString, IsEmail or a length rule), as the
// value fills a string; NewClass panics on one that has none.
func NewClass[T any](props ...Property[T]) *Class[T] {
	for _, p := range props {
		if !stringsOnly(p.rules) {
			panic("classvalidator: property " + strconv.Quote(p.name) + " needs a rule that passes strings only")
		}
	}
	return &Class[T]{props: props}
}

func stringsOnly(rules []Rule) bool {
	for _, r := range rules {
		if r.stringsOnly {
			return true
		}
	}
	return false
}

// A ValidationError is ValidationPipe's 400: class-validator's messages,
// unknown properties first, in body order, then each property's failures
// in declaration order, capped as MaxMessages says.
type ValidationError struct {
	Messages []string
}

func (e *ValidationError) Error() string { return strings.Join(e.Messages, "; ") }

// The list of validation failures is bounded, where class-validator (with
// whitelist and forbidNonWhitelisted) lists every unknown property, each
// named in full: a 100 KB body of short keys would answer some 400 KB, and
// one long key its own length. So the answer lists the first MaxMessages
// failures, in class-validator's order, and then, if there were more, one
// last line that counts them ("14000 more errors not listed"); and an
// unknown property's name is cut to MaxKeyInMessage characters, ending in
// "…". The DTOs' own rules fail at most 7 times, and a client sends a
// handful of unknown keys at most, so no real answer is changed. The
// largest 400 is under 8 KB: 16 names of 64 characters each written as
// \u00XX take 6.6 KB.
const (
	MaxMessages     = 16
	MaxKeyInMessage = 64
)

// Validate checks obj against the class as ValidationPipe does with
// whitelist and forbidNonWhitelisted, and returns it as a T, or the
// *ValidationError NestJS would answer.
func (c *Class[T]) Validate(obj Object) (T, error) {
	var (
		dst    T
		msgs   []string
		failed int
	)
	fail := func(msg func() string) {
		if failed++; failed <= MaxMessages {
			msgs = append(msgs, msg())
		}
	}
	for i := range obj.Len() {
		if k, _ := obj.At(i); !c.declares(k) && !neverCopied[k] {
			fail(func() string { return "property " + cutName(k) + " should not exist" })
		}
	}
	for _, p := range c.props {
		v, present := obj.Get(p.name)
		if p.optional && v == nil {
			continue
		}
		valid := true
		for _, r := range p.rules {
			if !r.ok(v, present) {
				valid = false
				fail(func() string { return r.msg })
			}
		}
		if s, isString := v.(string); valid && isString { // NewClass saw to it that a valid value is a string
			p.set(&dst, s)
		}
	}
	if msgs == nil {
		return dst, nil
	}
	if failed > MaxMessages {
		msgs = append(msgs, strconv.Itoa(failed-MaxMessages)+" more errors not listed")
	}
	var zero T
	return zero, &ValidationError{Messages: msgs}
}

func (c *Class[T]) declares(key string) bool {
	for _, p := range c.props {
		if p.name == key {
			return true
		}
	}
	return false
}

// cutName is a property name for a message: at most MaxKeyInMessage
// characters, the last "…" when it is cut.
func cutName(k string) string {
	n := 0
	for i := range k {
		if n == MaxKeyInMessage-1 {
			if utf8.RuneCountInString(k[i:]) > 1 {
				return k[:i] + "…"
			}
			break
		}
		n++
	}
	return k
}

// neverCopied are the keys that never reach class-validator, so are never
// reported: ValidationPipe deletes __proto__, prototype and constructor, and
// class-transformer skips a key whose value on the new DTO is a function,
// as Object.prototype's methods are.
var neverCopied = map[string]bool{
	"__proto__": true, "prototype": true, "constructor": true,
	"__defineGetter__": true, "__defineSetter__": true, "__lookupGetter__": true, "__lookupSetter__": true,
	"hasOwnProperty": true, "isPrototypeOf": true, "propertyIsEnumerable": true,
	"toString": true, "toLocaleString": true, "valueOf": true,
}
